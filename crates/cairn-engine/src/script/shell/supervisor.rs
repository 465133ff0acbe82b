//! Starting a command under a supervisor that kills everything it started.
//!
//! cairn starts a small supervisor process `S` for each command, and `S`
//! starts the program `P` (`sh -c …`, or the argument list) as its child:
//!
//! - `S` leads the command's new process group, and is a child subreaper
//!   (`PR_SET_CHILD_SUBREAPER`): a descendant whose parent dies is
//!   reparented to `S`, not to init, so even one that left the group
//!   (`setsid`) stays where `S` can find it.
//! - `S` gets `SIGTERM` when cairn dies (`PR_SET_PDEATHSIG`), and `P`
//!   gets `SIGKILL` when `S` does.
//! - When `P` exits, or `S` is sent `SIGTERM` (cairn stops the command on a
//!   timeout or a cancellation; or cairn died), `S` kills every descendant
//!   it has with `SIGKILL`, round after round (a killed child's children
//!   come to `S` next), reaps them, and leaves `P`'s wait status in the
//!   memory it shares with cairn, which reads it as the command's status.
//!   (It does not raise `P`'s signal again: a core-dumping signal in a
//!   process sharing cairn's memory would dump, and on older kernels kill,
//!   cairn too.)
//! - `S` holds no file descriptor once `P` runs: not the output pipes (a
//!   descendant holding them would keep the step open), not the pipe on
//!   which `P` says why it could not exec (it closes on exec).
//!
//! **How, cheaply.** Forking cairn for each command cost about half a
//! millisecond of system time per command on a 2-core VM (the fork
//! write-protects every page cairn has written, and cairn's threads then
//! take a fault on each page they write while the child exists), twice that
//! with a second fork for `P`. So `S` is made the way `posix_spawn` makes
//! its child: `clone(CLONE_VM)`, sharing cairn's memory (nothing is copied
//! or write-protected) on a small stack of its own, and `P` the same way on
//! another, until it execs. Nobody waits for anybody to start: cairn goes
//! on (it records the command's group meanwhile) as soon as `S` is cloned,
//! and `S` as soon as `P` is; a failed exec is read once `S` has exited.
//! What they share (the stacks, the arguments) is kept until `S` has
//! exited saying it is done with it, after reaping `P` (a supervisor killed
//! before that leaves it allocated for good: its program may still be
//! starting).
//!
//! Code running in `S` and `P` shares cairn's memory and its calling
//! thread's thread-local storage, and runs while cairn's threads run: it
//! makes raw system calls (no libc wrapper that could set the calling
//! thread's `errno`), never allocates, takes no lock, cannot panic, and
//! reads `/proc` into buffers on its own stack. The parent blocks every
//! signal around the clone, so no handler of cairn's runs in `S`; `S` keeps
//! them all blocked (it takes the few it waits for with `rt_sigtimedwait`),
//! and `P` restores the parent's mask just before it execs, with every
//! handler reset to the default first.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// The size of each of the two stacks (`S`'s for its whole life, `P`'s until
/// it execs), each with a guard page below it.
const STACK: usize = 64 << 10;
const PAGE: usize = 4 << 10;

/// Raw system calls: a negative result is `-errno`. No `errno` is set.
mod raw {
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn call(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
        ret
    }

    #[cfg(target_arch = "aarch64")]
    pub unsafe fn call(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
        ret
    }

    #[cfg(target_arch = "riscv64")]
    pub unsafe fn call(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        std::arch::asm!(
            "ecall",
            in("a7") n,
            inlateout("a0") a[0] as isize => ret,
            in("a1") a[1], in("a2") a[2], in("a3") a[3], in("a4") a[4], in("a5") a[5],
            options(nostack),
        );
        ret
    }

    /// Elsewhere, through libc: it sets the calling thread's `errno` on a
    /// failure, which `S` shares with the thread that started it.
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    pub unsafe fn call(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret = libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
        if ret < 0 {
            -(*libc::__errno_location() as isize)
        } else {
            ret as isize
        }
    }

    /// `clone(flags, stack)` that runs `f(arg)` in the child, on `stack`
    /// (16-byte aligned), without libc; `f` must never return.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn clone(
        flags: usize,
        stack: usize,
        f: unsafe extern "C" fn(usize) -> !,
        arg: usize,
    ) -> isize {
        let ret: isize;
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone as isize => ret,
            in("rdi") flags, in("rsi") stack, in("rdx") 0usize,
            in("r10") 0usize, in("r8") 0usize,
            in("r12") arg, in("r13") f,
            lateout("rcx") _, lateout("r11") _,
        );
        ret
    }

    #[cfg(target_arch = "aarch64")]
    pub unsafe fn clone(
        flags: usize,
        stack: usize,
        f: unsafe extern "C" fn(usize) -> !,
        arg: usize,
    ) -> isize {
        let ret: isize;
        std::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            "mov x29, xzr",
            "mov x30, xzr",
            "mov x0, x20",
            "blr x21",
            "brk #0",
            "2:",
            in("x8") libc::SYS_clone,
            inlateout("x0") flags as isize => ret,
            in("x1") stack, in("x2") 0usize, in("x3") 0usize, in("x4") 0usize,
            in("x20") arg, in("x21") f,
        );
        ret
    }

    #[cfg(target_arch = "riscv64")]
    pub unsafe fn clone(
        flags: usize,
        stack: usize,
        f: unsafe extern "C" fn(usize) -> !,
        arg: usize,
    ) -> isize {
        let ret: isize;
        std::arch::asm!(
            "ecall",
            "bnez a0, 2f",
            "mv a0, s2",
            "jalr s3",
            "unimp",
            "2:",
            in("a7") libc::SYS_clone,
            inlateout("a0") flags as isize => ret,
            in("a1") stack, in("a2") 0usize, in("a3") 0usize, in("a4") 0usize,
            in("s2") arg, in("s3") f,
        );
        ret
    }

    /// Elsewhere, libc's (which sets the calling thread's `errno` if it
    /// fails).
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    pub unsafe fn clone(
        flags: usize,
        stack: usize,
        f: unsafe extern "C" fn(usize) -> !,
        arg: usize,
    ) -> isize {
        extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `arg` is the pair below, alive in the caller's frame
            // until the child no longer needs it: the child copies it first.
            unsafe {
                let (f, arg) = *(arg as *const (unsafe extern "C" fn(usize) -> !, usize));
                f(arg)
            }
        }
        let pair = (f, arg);
        let pid = libc::clone(
            trampoline,
            stack as *mut libc::c_void,
            flags as libc::c_int | libc::CLONE_VFORK,
            &pair as *const _ as *mut libc::c_void,
        );
        if pid < 0 {
            -(*libc::__errno_location() as isize)
        } else {
            pid as isize
        }
    }

    pub unsafe fn call0(n: libc::c_long) -> isize {
        call(n, [0; 6])
    }

    pub unsafe fn call1(n: libc::c_long, a: usize) -> isize {
        call(n, [a, 0, 0, 0, 0, 0])
    }

    pub unsafe fn call2(n: libc::c_long, a: usize, b: usize) -> isize {
        call(n, [a, b, 0, 0, 0, 0])
    }

    pub unsafe fn call3(n: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        call(n, [a, b, c, 0, 0, 0])
    }

    pub unsafe fn call4(n: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
        call(n, [a, b, c, d, 0, 0])
    }

    pub unsafe fn exit(code: i32) -> ! {
        loop {
            call1(libc::SYS_exit_group, code as usize);
        }
    }

    /// The kernel's `struct sigaction` (not libc's): handler, flags,
    /// restorer, a 64-bit mask.
    #[repr(C)]
    pub struct Action {
        pub handler: usize,
        pub flags: libc::c_ulong,
        pub restorer: usize,
        pub mask: u64,
    }

    /// Sets `signal`'s action to the default.
    pub unsafe fn default_action(signal: i32) {
        let action = Action {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        call4(
            libc::SYS_rt_sigaction,
            signal as usize,
            &action as *const Action as usize,
            0,
            8,
        );
    }

    /// `rt_sigprocmask(how, set)`, with the kernel's 64-bit sets.
    pub unsafe fn mask(how: i32, set: &u64) {
        call4(
            libc::SYS_rt_sigprocmask,
            how as usize,
            set as *const u64 as usize,
            0,
            8,
        );
    }
}

/// A signal's bit in a kernel signal set.
const fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// What `S` waits for: a child ended, stop (cairn asked, or died), and a
/// hang-up (S is in no foreground group, but then stop too rather than die
/// without cleaning up).
const WAITED: u64 = bit(libc::SIGCHLD) | bit(libc::SIGTERM) | bit(libc::SIGHUP);

/// What the parent prepares for `S` and `P`, kept (in [`Prepared`]) until
/// `S` has been reaped after it said it is done with it.
#[repr(C)]
struct Spawn {
    /// Set by `S` as it exits normally, when `P` has been reaped (or never
    /// started): nothing runs on the stacks or reads this any more.
    done: std::sync::atomic::AtomicBool,
    /// `P`'s wait status, written by `S` before `done` (-1: none, `P` never
    /// ran). `S` then exits 0: raising `P`'s signal again in `S`, which
    /// shares cairn's memory, would make a core-dumping signal dump (and,
    /// before Linux 5.16, kill) every process sharing it, cairn too.
    status: std::sync::atomic::AtomicI32,
    /// `S`'s pid, which `S` writes before it starts `P`: `P`'s parent.
    supervisor: std::sync::atomic::AtomicI32,
    /// cairn's pid: if `S` finds another parent, cairn is gone already.
    parent: libc::pid_t,
    /// Where to look for the program, in order (one path for a name with a
    /// `/`, else one per `PATH` entry), NULL-terminated.
    candidates: *const *const libc::c_char,
    argv: *const *const libc::c_char,
    /// `/bin/sh`, a slot for the candidate, then the rest of `argv`: for a
    /// file that is not an executable format (a script with no `#!`), run
    /// by the shell as `execvp` does.
    script_argv: *mut *const libc::c_char,
    envp: *const *const libc::c_char,
    dir: *const libc::c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// Where a failure to start `P` is written (4 bytes, the native-endian
    /// errno); it closes on exec, so nothing is written when `P` starts.
    report: RawFd,
    /// The signal mask cairn's thread had, for `P`.
    mask: u64,
    /// The top of `P`'s stack.
    program_stack: usize,
}

/// A command started under its supervisor.
pub(super) struct Supervised {
    /// The supervisor's pid: it leads the command's process group.
    pub pid: libc::pid_t,
    pub stdout: std::fs::File,
    pub stderr: std::fs::File,
    /// What the supervisor and the program share with cairn until the
    /// supervisor is reaped.
    pub shared: Shared,
}

/// The stacks, the arguments and the start report of a supervised command.
/// Dropped without [`Shared::reaped`], it leaves the stacks and arguments
/// allocated: the supervisor may still use them.
pub(super) struct Shared {
    stacks: Option<Stacks>,
    prepared: Option<Box<Prepared>>,
    report: OwnedFd,
}

impl Shared {
    /// Once the supervisor has been reaped: whether the program could not
    /// be started, and why. Frees what it shared, or, if the supervisor was
    /// killed before it was done (so the program may not have exec'd yet),
    /// leaves it allocated for good.
    /// Also the program's wait status, as the supervisor saw it, if it was
    /// done (`None`: it was killed first, so its own status tells).
    pub fn reaped(mut self) -> (Option<io::Error>, Option<i32>) {
        let done = self
            .prepared
            .as_ref()
            .is_some_and(|p| p.spawn.done.load(std::sync::atomic::Ordering::Acquire));
        if !done {
            // Killed: its program may still hold the report's write end.
            return (None, None);
        }
        let status = self
            .prepared
            .as_ref()
            .map(|p| p.spawn.status.load(std::sync::atomic::Ordering::Acquire))
            .filter(|&s| s >= 0);
        // Every write end is closed: the program exec'd or exited.
        let errno = read_report(&self.report);
        if let Some(stacks) = self.stacks.take() {
            // SAFETY: the supervisor said it was done, and was reaped.
            unsafe { stacks.release() };
        }
        self.prepared = None;
        (errno.map(io::Error::from_raw_os_error), status)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Whatever `reaped` did not free stays: something may still use it.
        if let Some(stacks) = self.stacks.take() {
            std::mem::forget(stacks);
        }
        if let Some(prepared) = self.prepared.take() {
            std::mem::forget(prepared);
        }
    }
}

/// The program's arguments as `P` reads them, and the strings they point
/// to. Boxed, so that `spawn` stays where `S` was told it is.
struct Prepared {
    spawn: Spawn,
    _strings: (Vec<CString>, Vec<CString>, CString),
    _pointers: (
        Vec<*const libc::c_char>,
        Vec<*const libc::c_char>,
        Vec<*const libc::c_char>,
    ),
}

// SAFETY: the pointers point into the strings it owns (or `environ`).
unsafe impl Send for Prepared {}

/// `S`'s and `P`'s stacks, one mapping in cairn's memory. Only unmapped
/// once the supervisor has been reaped ([`Stacks::release`]); otherwise left
/// mapped, as a running supervisor may still use it.
pub(super) struct Stacks {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: a mapping's address, unmapped by whoever holds it.
unsafe impl Send for Stacks {}

impl Stacks {
    /// A pair of stacks: one this thread used before (a supervisor reaped
    /// since), or a new mapping.
    fn take() -> io::Result<Self> {
        match SPARE.try_with(|spare| spare.take()).ok().flatten() {
            Some(stacks) => Ok(stacks),
            None => Self::map(),
        }
    }

    fn map() -> io::Result<Self> {
        let len = 2 * (PAGE + STACK);
        // SAFETY: a new private anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stacks = Self { base, len };
        for guard in [0, PAGE + STACK] {
            // SAFETY: a page of the mapping just made.
            if unsafe { libc::mprotect(stacks.at(guard).cast(), PAGE, libc::PROT_NONE) } != 0 {
                let error = io::Error::last_os_error();
                // SAFETY: nothing runs on it yet.
                unsafe { libc::munmap(stacks.base, stacks.len) };
                return Err(error);
            }
        }
        Ok(stacks)
    }

    fn at(&self, offset: usize) -> *mut u8 {
        self.base.cast::<u8>().wrapping_add(offset)
    }

    /// The top of `P`'s stack and of `S`'s.
    fn tops(&self) -> (usize, usize) {
        (
            self.at(PAGE + STACK) as usize,
            self.at(2 * (PAGE + STACK)) as usize,
        )
    }

    /// Gives the stacks back: kept for this thread's next command (mapping,
    /// guarding and unmapping stacks for each command costs more than the
    /// command's own start), unmapped when the thread ends.
    ///
    /// # Safety
    ///
    /// Only once nothing runs on them: the supervisor was reaped (or never
    /// started).
    pub unsafe fn release(self) {
        // As the thread ends, the closure (and these stacks) are dropped.
        let _ = SPARE.try_with(move |spare| drop(spare.replace(Some(self))));
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        // Only a spare is ever dropped (`release` is the only way back).
        // SAFETY: nothing runs on a spare.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

thread_local! {
    /// This thread's spare stacks, from its last command.
    static SPARE: std::cell::Cell<Option<Stacks>> = const { std::cell::Cell::new(None) };
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

/// A NULL-terminated array of pointers into `strings`.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// A pipe whose both ends close on exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

extern "C" {
    /// The process's environment, as `execvp` passes it.
    static environ: *const *const libc::c_char;
}

/// Starts `argv` (the program, found along `PATH` as `execvp` finds it,
/// and its arguments) in `dir`, with stdin from `/dev/null` and stdout and
/// stderr into pipes, under a supervisor that leads a new process group.
///
/// Returns as soon as the supervisor is cloned: it and the program set
/// themselves up while cairn goes on. A program that could not be started
/// (missing, not executable) exits with 127, and [`Shared::reaped`] gives
/// the error `Command::spawn` would have returned.
pub(super) fn spawn(argv: &[&OsStr], dir: &std::path::Path) -> io::Result<Supervised> {
    let args: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let program = argv.first().map_or(&b""[..], |p| p.as_bytes());
    let candidates: Vec<CString> = if program.contains(&b'/') {
        vec![cstring(program)?]
    } else {
        // `execvp`'s search: each entry of PATH (empty: the current
        // directory), `/bin:/usr/bin` without one.
        let path = std::env::var_os("PATH");
        let path = path
            .as_deref()
            .map_or(&b"/bin:/usr/bin"[..], OsStr::as_bytes);
        path.split(|&b| b == b':')
            .map(|entry| {
                let mut full = entry.to_vec();
                if !entry.is_empty() {
                    full.push(b'/');
                }
                full.extend_from_slice(program);
                cstring(&full)
            })
            .collect::<io::Result<_>>()?
    };
    let dir = cstring(dir.as_os_str().as_bytes())?;
    let candidate_pointers = pointers(&candidates);
    let arg_pointers = pointers(&args);
    let mut script_argv: Vec<*const libc::c_char> = [c"/bin/sh".as_ptr(), std::ptr::null()]
        .into_iter()
        .chain(arg_pointers.iter().skip(1).copied())
        .collect();
    let stdin = std::fs::File::open("/dev/null")?;
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let stacks = Stacks::take()?;
    let (program_stack, supervisor_stack) = stacks.tops();
    let spawn = Spawn {
        done: std::sync::atomic::AtomicBool::new(false),
        status: std::sync::atomic::AtomicI32::new(-1),
        supervisor: std::sync::atomic::AtomicI32::new(0),
        parent: std::process::id() as libc::pid_t,
        candidates: candidate_pointers.as_ptr(),
        argv: arg_pointers.as_ptr(),
        script_argv: script_argv.as_mut_ptr(),
        // As `Command` passes it when no variable is changed: the live
        // environment (changing it while threads run is unsound anyway).
        // SAFETY: reads the pointer.
        envp: unsafe { environ },
        dir: dir.as_ptr(),
        stdin: stdin.as_raw_fd(),
        stdout: stdout_write.as_raw_fd(),
        stderr: stderr_write.as_raw_fd(),
        report: report_write.as_raw_fd(),
        mask: 0,
        program_stack,
    };
    // Moving the vectors and strings keeps their buffers where they are.
    let mut prepared = Box::new(Prepared {
        spawn,
        _strings: (args, candidates, dir),
        _pointers: (candidate_pointers, arg_pointers, script_argv),
    });
    // SAFETY: a zeroed sigset_t is valid; sigfillset and pthread_sigmask
    // only write to the sets given.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut mask);
    }
    // The kernel's set is the first 64 bits of libc's.
    // SAFETY: sigset_t is at least 8 bytes on Linux.
    prepared.spawn.mask =
        unsafe { std::ptr::read_unaligned((&mask as *const libc::sigset_t).cast::<u64>()) };
    // SAFETY: `supervisor` runs on its own stack in this memory, reading
    // only `prepared` (kept until it is done) and its stack; every signal is
    // blocked in it from its first instruction.
    let pid = unsafe {
        libc::clone(
            supervisor,
            supervisor_stack as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            &prepared.spawn as *const Spawn as *mut libc::c_void,
        )
    };
    let cloned = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: restores this thread's mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
    }
    // The supervisor has its own copies of these.
    drop((stdin, stdout_write, stderr_write, report_write));
    if let Err(e) = cloned {
        // SAFETY: nothing was started on them.
        unsafe { stacks.release() };
        return Err(e);
    }
    Ok(Supervised {
        pid,
        stdout: std::fs::File::from(stdout_read),
        stderr: std::fs::File::from(stderr_read),
        shared: Shared {
            stacks: Some(stacks),
            prepared: Some(prepared),
            report: report_read,
        },
    })
}

/// The errno a failed start wrote, if any: read once the supervisor has
/// exited (so every copy of the pipe's write end is closed).
fn read_report(pipe: &OwnedFd) -> Option<i32> {
    // Once the supervisor is done the report is there or never comes; a
    // copy of the write end another thread's command still holds (until
    // that one execs) must not keep this read waiting.
    // SAFETY: sets a flag on a descriptor this owns.
    unsafe {
        let flags = libc::fcntl(pipe.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        // SAFETY: reads into the rest of `bytes`.
        let n = unsafe { libc::read(pipe.as_raw_fd(), bytes[got..].as_mut_ptr().cast(), 4 - got) };
        match n {
            n if n > 0 => got += n as usize,
            n if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
    Some(i32::from_ne_bytes(bytes))
}

/// `S`: sets itself up, starts `P`, then supervises. Every signal is
/// blocked when it starts (the parent blocked them around the clone).
extern "C" fn supervisor(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Spawn`, kept until `done` is set and
    // this process reaped; only raw system calls from here on.
    unsafe {
        let spawn = &*(arg as *const Spawn);
        // An ignored SIGCHLD (inherited) would reap children unseen.
        raw::default_action(libc::SIGCHLD);
        let grouped = raw::call2(libc::SYS_setpgid, 0, 0);
        if grouped < 0 {
            report(spawn.report, -grouped as i32);
            finish(spawn, 1);
        }
        // Without it (Linux before 3.4), descendants that leave the group
        // escape, as they did before.
        raw::call2(libc::SYS_prctl, libc::PR_SET_CHILD_SUBREAPER as usize, 1);
        raw::call2(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG as usize,
            libc::SIGTERM as usize,
        );
        if raw::call0(libc::SYS_getppid) != spawn.parent as isize {
            // cairn died already.
            finish(spawn, 1);
        }
        raw::call2(
            libc::SYS_prctl,
            libc::PR_SET_NAME as usize,
            c"cairn-sh".as_ptr() as usize,
        );
        let me = raw::call0(libc::SYS_getpid) as libc::pid_t;
        spawn
            .supervisor
            .store(me, std::sync::atomic::Ordering::Release);
        // P shares this memory until it execs, on its own stack.
        let pid = raw::clone(
            (libc::CLONE_VM | libc::SIGCHLD) as usize,
            spawn.program_stack,
            start_program,
            spawn as *const Spawn as usize,
        );
        if pid < 0 {
            report(spawn.report, -pid as i32);
            finish(spawn, 1);
        }
        // P has its own copies: S holds none of the pipes.
        close_all();
        supervise(spawn, me, pid as libc::pid_t)
    }
}

unsafe fn report(fd: RawFd, errno: i32) {
    let bytes = errno.to_ne_bytes();
    raw::call3(libc::SYS_write, fd as usize, bytes.as_ptr() as usize, 4);
}

/// Marks `spawn` done (P was reaped, or never started), then exits.
unsafe fn finish(spawn: &Spawn, code: i32) -> ! {
    spawn.done.store(true, std::sync::atomic::Ordering::Release);
    raw::exit(code)
}

/// `P`: the command's stdio, directory, a death signal, the parent's mask
/// and default handlers, then the program.
unsafe extern "C" fn start_program(arg: usize) -> ! {
    // SAFETY: `arg` is the parent's `Spawn`, kept until the supervisor,
    // which reaps this process first, is done. Only raw system calls.
    unsafe {
        let spawn = &*(arg as *const Spawn);
        let fail = |errno: isize| -> ! {
            report(spawn.report, -errno as i32);
            raw::exit(127)
        };
        for (from, to) in [(spawn.stdin, 0), (spawn.stdout, 1), (spawn.stderr, 2)] {
            let done = if from == to {
                raw::call3(libc::SYS_fcntl, to as usize, libc::F_SETFD as usize, 0)
            } else {
                raw::call3(libc::SYS_dup3, from as usize, to as usize, 0)
            };
            if done < 0 {
                fail(done);
            }
        }
        let done = raw::call1(libc::SYS_chdir, spawn.dir as usize);
        if done < 0 {
            fail(done);
        }
        raw::call2(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG as usize,
            libc::SIGKILL as usize,
        );
        let supervisor = spawn.supervisor.load(std::sync::atomic::Ordering::Acquire);
        if raw::call0(libc::SYS_getppid) != supervisor as isize {
            raw::exit(1);
        }
        // No handler of cairn's may run here, on this stack: every caught
        // signal goes back to its default (an ignored one stays ignored, as
        // exec keeps it, except SIGPIPE, which Rust ignores and a command
        // expects by default).
        for signal in 1..=64 {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let mut old = raw::Action {
                handler: 0,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            let got = raw::call4(
                libc::SYS_rt_sigaction,
                signal as usize,
                0,
                &mut old as *mut raw::Action as usize,
                8,
            );
            if got == 0
                && (old.handler != libc::SIG_DFL
                    // Ignored by cairn itself, not by what it runs: SIGPIPE
                    // (Rust's runtime) and SIGXFSZ (the binary: a full store
                    // is an error it reports, see main.rs).
                    && (old.handler != libc::SIG_IGN
                        || signal == libc::SIGPIPE
                        || signal == libc::SIGXFSZ))
            {
                raw::default_action(signal);
            }
        }
        raw::mask(libc::SIG_SETMASK, &spawn.mask);
        // `execvp`'s rules: the first candidate that execs; a missing one
        // goes on to the next, one not permitted is remembered; a file
        // that is not an executable format runs under the shell.
        let mut denied = false;
        let mut last = -(libc::ENOENT as isize);
        let mut at = 0usize;
        loop {
            let candidate = *spawn.candidates.add(at);
            if candidate.is_null() {
                break;
            }
            at += 1;
            let error = raw::call3(
                libc::SYS_execve,
                candidate as usize,
                spawn.argv as usize,
                spawn.envp as usize,
            );
            match -error as i32 {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::ENOEXEC => {
                    *spawn.script_argv.add(1) = candidate;
                    let error = raw::call3(
                        libc::SYS_execve,
                        *spawn.script_argv as usize,
                        spawn.script_argv as usize,
                        spawn.envp as usize,
                    );
                    fail(error);
                }
                _ => fail(error),
            }
            last = error;
        }
        fail(if denied {
            -(libc::EACCES as isize)
        } else {
            last
        })
    }
}

/// Closes every file descriptor.
unsafe fn close_all() {
    if raw::call3(libc::SYS_close_range, 0, u32::MAX as usize, 0) == 0 {
        return;
    }
    // Before Linux 5.9: those `/proc/self/fd` lists, else every number up
    // to the limit.
    let listed = each_number_in(c"/proc/self/fd", |fd, dir| {
        if fd != dir as i64 {
            raw::call1(libc::SYS_close, fd as usize);
        }
    });
    if !listed {
        let mut limit = [0u64; 2];
        let got = raw::call4(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE as usize,
            0,
            limit.as_mut_ptr() as usize,
        );
        let top = if got == 0 {
            limit[0].min(1 << 16)
        } else {
            1024
        };
        for fd in 0..top {
            raw::call1(libc::SYS_close, fd as usize);
        }
    }
}

/// Waits for `P` (reaping any orphan that ends meanwhile) or a stop signal,
/// then kills every descendant left and exits as `P` did.
unsafe fn supervise(spawn: &Spawn, me: libc::pid_t, program: libc::pid_t) -> ! {
    let mut ended: Option<i32> = None;
    let mut stop = false;
    loop {
        reap(program, &mut ended, libc::WNOHANG);
        if ended.is_some() || stop {
            break;
        }
        // The signals are blocked, so one that came since `reap` is
        // pending and returned here: none is missed.
        let mut info = [0u64; 16];
        let signal = raw::call4(
            libc::SYS_rt_sigtimedwait,
            &WAITED as *const u64 as usize,
            info.as_mut_ptr() as usize,
            0,
            8,
        );
        // From cairn (a stop, or its death signal, which carries its pid)
        // or the kernel (a hangup) only: the program shares `S`'s group,
        // and a `kill 0` of its own must not stop it as cairn would.
        let fields = info.as_ptr() as *const i32;
        let (code, sender) = (*fields.add(2), *fields.add(4));
        if (signal == libc::SIGTERM as isize || signal == libc::SIGHUP as isize)
            && (sender == spawn.parent || code > 0)
        {
            stop = true;
        }
    }
    kill_descendants(me, program, &mut ended);
    // P is reaped: nothing of the parent's is touched after this.
    if let Some(status) = ended {
        spawn
            .status
            .store(status, std::sync::atomic::Ordering::Release);
    }
    spawn.done.store(true, std::sync::atomic::Ordering::Release);
    raw::exit(0)
}

/// Reaps ended children (`WNOHANG`: every one that has ended; `0`: waits for
/// one), noting `P`'s status. Returns the last `wait4` result.
unsafe fn reap(program: libc::pid_t, ended: &mut Option<i32>, options: i32) -> isize {
    loop {
        let mut status: i32 = 0;
        let pid = raw::call4(
            libc::SYS_wait4,
            -1isize as usize,
            &mut status as *mut i32 as usize,
            options as usize,
            0,
        );
        if pid == program as isize {
            *ended = Some(status);
        }
        if pid > 0 && options == libc::WNOHANG {
            continue;
        }
        if pid == -(libc::EINTR as isize) {
            continue;
        }
        return pid;
    }
}

/// Kills every descendant: the supervisor's children with SIGKILL, round
/// after round (a killed child's own children are reparented to it, a
/// subreaper), until it has no child left.
unsafe fn kill_descendants(me: libc::pid_t, program: libc::pid_t, ended: &mut Option<i32>) {
    if ended.is_none() {
        raw::call2(libc::SYS_kill, program as usize, libc::SIGKILL as usize);
        // Until it is reaped it may still be starting, on its stack in
        // cairn's memory: nothing returns before that.
        while ended.is_none() {
            if reap(program, ended, 0) < 0 {
                break;
            }
        }
    }
    // A `/proc` of another pid namespace names other processes.
    let own_proc = proc_is_ours(me);
    loop {
        match reap(program, ended, libc::WNOHANG) {
            // Children still run.
            0 => {}
            // ECHILD: no child at all, so (a subreaper) no descendant
            // either. The common case: nothing was left behind.
            pid if pid < 0 => return,
            _ => continue,
        }
        let mut killed = 0;
        let listed = own_proc
            && each_number_in(c"/proc", |pid, _| {
                if pid != i64::from(me)
                    && parent_of(pid) == Some(i64::from(me))
                    && raw::call2(libc::SYS_kill, pid as usize, libc::SIGKILL as usize) == 0
                {
                    killed += 1;
                }
            });
        if !listed || killed == 0 {
            // No `/proc` (or another namespace's), or children it may not
            // kill (another user's) or cannot see: waiting for them could
            // last forever. Whatever stayed in the group is killed by cairn
            // after this exits; what left it escapes.
            return;
        }
        // Every child seen is dying: wait for one, then look again.
        if reap(program, ended, 0) < 0 {
            return;
        }
    }
}

/// Whether `/proc` is this pid namespace's: `/proc/self` names `me`.
unsafe fn proc_is_ours(me: libc::pid_t) -> bool {
    let mut buf = [0u8; 24];
    let n = raw::call4(
        libc::SYS_readlinkat,
        libc::AT_FDCWD as usize,
        c"/proc/self".as_ptr() as usize,
        buf.as_mut_ptr() as usize,
        buf.len(),
    );
    n > 0 && number(&buf[..n as usize]) == Some(i64::from(me))
}

/// Calls `each(number, dir_fd)` for every entry of `dir` whose name is a
/// number (a pid in `/proc`, a descriptor in `/proc/self/fd`). `false` if
/// the directory cannot be read.
unsafe fn each_number_in(dir: &std::ffi::CStr, mut each: impl FnMut(i64, RawFd)) -> bool {
    let fd = raw::call4(
        libc::SYS_openat,
        libc::AT_FDCWD as usize,
        dir.as_ptr() as usize,
        (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as usize,
        0,
    );
    if fd < 0 {
        return false;
    }
    // `struct linux_dirent64`s: inode (8 bytes), offset (8), record length
    // (2), type (1), then the name, NUL-terminated.
    #[repr(C, align(8))]
    struct Buffer([u8; 4096]);
    let mut buffer = Buffer([0; 4096]);
    loop {
        let read = raw::call3(
            libc::SYS_getdents64,
            fd as usize,
            buffer.0.as_mut_ptr() as usize,
            buffer.0.len(),
        );
        if read <= 0 {
            break;
        }
        let entries = buffer.0.get(..read as usize).unwrap_or(&[]);
        let mut at = 0usize;
        while let (Some(&low), Some(&high)) = (entries.get(at + 16), entries.get(at + 17)) {
            let length = usize::from(u16::from_ne_bytes([low, high]));
            if length == 0 {
                break;
            }
            if let Some(number) = entries
                .get(at + 19..at.saturating_add(length))
                .and_then(number)
            {
                each(number, fd as RawFd);
            }
            at = at.saturating_add(length);
        }
    }
    raw::call1(libc::SYS_close, fd as usize);
    true
}

/// The decimal number a NUL-terminated name is, if it is one.
fn number(name: &[u8]) -> Option<i64> {
    let mut value: i64 = 0;
    let mut digits = 0;
    for &byte in name {
        match byte {
            0 => break,
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(i64::from(byte - b'0'))?;
                digits += 1;
            }
            _ => return None,
        }
    }
    (digits > 0).then_some(value)
}

/// The parent of process `pid` (field 4 of `/proc/<pid>/stat`).
unsafe fn parent_of(pid: i64) -> Option<i64> {
    // "/proc/" + up to 19 digits + "/stat" + NUL.
    let mut path = [0u8; 32];
    let mut at = 0usize;
    let mut put = |byte: u8| {
        if let Some(slot) = path.get_mut(at) {
            *slot = byte;
        }
        at += 1;
    };
    b"/proc/".iter().for_each(|&b| put(b));
    let mut digits = [0u8; 20];
    let mut count = 0usize;
    let mut rest = pid.unsigned_abs();
    loop {
        if let Some(slot) = digits.get_mut(count) {
            *slot = b'0' + (rest % 10) as u8;
        }
        count += 1;
        rest /= 10;
        if rest == 0 || count == digits.len() {
            break;
        }
    }
    while count > 0 {
        count -= 1;
        put(digits.get(count).copied().unwrap_or(b'0'));
    }
    b"/stat\0".iter().for_each(|&b| put(b));
    let fd = raw::call4(
        libc::SYS_openat,
        libc::AT_FDCWD as usize,
        path.as_ptr() as usize,
        (libc::O_RDONLY | libc::O_CLOEXEC) as usize,
        0,
    );
    if fd < 0 {
        return None;
    }
    // The name (at most 16 bytes) and the fields up to the parent are well
    // within the first 512 bytes.
    let mut text = [0u8; 512];
    let read = raw::call3(
        libc::SYS_read,
        fd as usize,
        text.as_mut_ptr() as usize,
        text.len(),
    );
    raw::call1(libc::SYS_close, fd as usize);
    if read <= 0 {
        return None;
    }
    parent_in_stat(text.get(..read as usize)?)
}

/// Field 4 of a `stat` line: after the name in parentheses (which may hold
/// anything, parentheses too: the fields start after the last `)`), the
/// state, then the parent.
fn parent_in_stat(text: &[u8]) -> Option<i64> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text
        .get(close + 1..)?
        .split(|&b| b == b' ')
        .filter(|field| !field.is_empty());
    let _state = fields.next()?;
    let parent = fields.next()?;
    let mut value: i64 = 0;
    for &byte in parent {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(byte - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::{number, parent_in_stat};

    #[test]
    fn reads_numbers_and_the_parent_from_stat() {
        assert_eq!(number(b"1234\0"), Some(1234));
        assert_eq!(number(b"self\0"), None);
        assert_eq!(number(b"\0"), None);
        assert_eq!(parent_in_stat(b"42 (sh) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_in_stat(b"42 (a) b) (c) R 1 42"), Some(1));
        assert_eq!(parent_in_stat(b"42 (sh"), None);
    }
}
