//! `cairn runs delete` and `cairn runs prune`: removing recorded runs.

use std::path::Path;

use crate::error::Error;
use cairn_store::services;

/// `cairn runs delete` / `cairn runs prune`.
pub fn remove(state_dir: &Path, action: super::RunsAction) -> Result<i32, Error> {
    let store = super::runs::existing(state_dir, cairn_store::Durability::Normal)?;
    let refused = super::durable::refused;
    match action {
        super::RunsAction::Delete { runs } => {
            for run in runs {
                let deleted = services::delete_run(&store, &run).map_err(refused)?;
                let children = match deleted.len() - 1 {
                    0 => String::new(),
                    1 => " and its child run".to_owned(),
                    n => format!(" and its {n} child runs"),
                };
                println!("deleted run {}{children}", deleted[0]);
            }
        }
        super::RunsAction::Prune { older_than, keep } => {
            if older_than.is_none() && keep.is_none() {
                return Err(Error::Usage(
                    "`cairn runs prune` needs `--older-than <age>`, `--keep <n>` or both"
                        .to_owned(),
                ));
            }
            let deleted =
                services::prune(&store, older_than, keep.unwrap_or(0)).map_err(refused)?;
            match deleted.as_slice() {
                [] => println!("no run to prune"),
                [id] => println!("deleted 1 run: {id}"),
                ids => println!("deleted {} runs: {}", ids.len(), ids.join(", ")),
            }
        }
    }
    Ok(0)
}
