//! `--approve <gate>` names a gate of the plan (or `step.gate` one of a
//! `plan:` step's child run): anything else is refused before the run starts.

use cairn_lang::plan::{Plan, Step, StepKind};

use crate::Error;

/// Every approval names a gate the run can reach: a gate of the plan (a
/// `use`d template's too, `dbg.ship-fix`), or (`round.ship`,
/// `round[2].ship`, `round#2.ship`) one under a `plan:` step.
/// The gates of child runs are only known once they run.
pub fn check_approvals(plan: &Plan, approvals: &[String]) -> Result<(), Error> {
    let gates = || {
        plan.tasks
            .iter()
            .filter(|t| t.step.kind() == StepKind::Gate)
            .map(|t| t.id.as_str())
    };
    for name in approvals {
        // (A `use`d template's gates are the plan's: `dbg.ship-fix`.)
        if let Some(gate) = plan.task(name).filter(|t| t.step.kind() == StepKind::Gate) {
            // Approved up front, the gate's input takes its defaults.
            if let Step::Gate(g) = &gate.step {
                if let Err(problems) = cairn_lang::plan::complete(&g.input, &[]) {
                    return Err(Error::Usage(format!(
                        "`--approve {name}` cannot give the gate its input: {}; let the run pause at the gate and approve it with `cairn approve <run> {name} --input field=value --reason …`",
                        problems.join("; ")
                    )));
                }
            }
            continue;
        }
        let refused = match name.split_once('.') {
            Some((step, _)) => {
                let task = cairn_lang::plan::part_of(step).unwrap_or(step);
                match plan.task(task) {
                    Some(t) if t.call.is_some() => continue,
                    Some(_) => format!(
                        "`--approve {name}`: `{task}` is not a `plan:` step, so it has no gates of its own"
                    ),
                    None => format!("`--approve {name}`: the plan has no step `{task}`"),
                }
            }
            None => match cairn_lang::check::closest(name, gates()) {
                Some(close) => {
                    format!("`--approve {name}`: the plan has no gate `{name}`; did you mean `{close}`?")
                }
                None if gates().next().is_none() => {
                    format!("`--approve {name}`: the plan has no gates")
                }
                None => {
                    let known: Vec<String> = gates().map(|g| format!("`{g}`")).collect();
                    format!(
                        "`--approve {name}`: the plan has no gate `{name}` (it has {})",
                        known.join(", ")
                    )
                }
            },
        };
        return Err(Error::Usage(refused));
    }
    Ok(())
}
