//! The `cairn` command; everything lives in the library's `cli` module.

// Checking and running allocate many small strings and vectors; mimalloc
// serves them faster than the system allocator (the library leaves the
// choice to whoever embeds it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(cairn::cli::main());
}
