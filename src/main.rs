//! The `cairn` command: the CLI, the REPL and the terminal UI over the
//! library crates (ARCHITECTURE.md says which does what).

mod cli;
mod error;
mod repl;

// Checking and running allocate many small strings and vectors; mimalloc
// serves them faster than the system allocator (the library leaves the
// choice to whoever embeds it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Past a file-size limit (`ulimit -f`) a write should fail with EFBIG,
    // which the run store reports and survives, not kill cairn with SIGXFSZ
    // half-way through a commit. Process-wide, so the binary sets it, not
    // the library; commands get the default back when they start.
    // SAFETY: setting a signal's disposition to "ignore" runs no handler.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    std::process::exit(cli::main());
}
