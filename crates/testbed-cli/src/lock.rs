//! One apply or destroy at a time per world.
//!
//! A world is what a run changes: the simulated machine (its state file, wherever the config that names it
//! lives), a real LXD daemon (by its socket), and the real host's own layers. Each has one lock file, found
//! the same way by every config: beside the sim-state for the simulated machine, in the host's lock
//! directory (`/run/lock`) for the real ones. The lock is the kernel's (`flock`) on that file, held for the
//! run through an open file: taking it is atomic, only its holder releases it, and it goes away with the
//! holder, however that ends. The lock file is never removed, so there is never a moment when two runs see
//! two different files. What is in it (pid, start time, command, config, since when) only names the holder
//! to the run that is refused, and tells the next run that the last one ended without releasing it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The environment variable naming the directory of the real worlds' locks [default: /run/lock].
pub const LOCK_DIR_ENV: &str = "TESTBED_LOCK_DIR";

/// How often a run waiting for a lock (`--lock-timeout`) tries again.
const RETRY: Duration = Duration::from_millis(100);

/// One world a run changes, and so locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum World {
    /// The simulated machine kept in this state file.
    Simulated { sim_state: PathBuf },
    /// The LXD (or Incus) daemon at this socket.
    Lxd { socket: PathBuf },
    /// This host's own layers: packages, kernel limits, MicroK8s, the registry, Karmada.
    Host,
}

impl World {
    /// Where this world's lock file is.
    pub fn lock_file(&self) -> PathBuf {
        match self {
            World::Simulated { sim_state } => {
                let mut name = sim_state.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "sim".into());
                name.push(".lock");
                sim_state.with_file_name(name)
            }
            World::Lxd { socket } => {
                let socket = std::fs::canonicalize(socket).unwrap_or_else(|_| socket.clone());
                real_lock_dir().join(format!("testbed-lxd{}.lock", file_name_part(&socket.to_string_lossy())))
            }
            World::Host => real_lock_dir().join("testbed-host.lock"),
        }
    }

    fn describe(&self) -> String {
        match self {
            World::Simulated { sim_state } => format!("the simulated machine {}", sim_state.display()),
            World::Lxd { socket } => format!("the LXD daemon at {}", socket.display()),
            World::Host => "this host".to_owned(),
        }
    }
}

fn real_lock_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let run_lock = Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A path made into part of a file name that a person can still read: `/var/snap/lxd/common/lxd/unix.socket`
/// becomes `-var-snap-lxd-common-lxd-unix.socket`. A long one keeps its end and a hash of the whole.
fn file_name_part(path: &str) -> String {
    let readable: String =
        path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' }).collect();
    const KEEP: usize = 120;
    if readable.len() <= KEEP {
        return readable;
    }
    // FNV-1a: stable across builds and versions, so every testbed on the host finds the same file.
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("-{hash:016x}{}", &readable[readable.len() - KEEP..])
}

/// Who holds a lock: written into the lock file once it is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`): with the pid, it tells the
    /// process from a later one given the same pid.
    pub start_time: Option<u64>,
    /// `apply` or `destroy`.
    pub command: String,
    pub config: PathBuf,
    /// When the run took the lock, RFC 3339.
    pub since: String,
}

impl Holder {
    /// This process, about to run `command` for `config`.
    pub fn this_run(command: &str, config: &Path) -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start_time: start_time(pid),
            command: command.to_owned(),
            config: std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf()),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }

    /// `pid 4242 (testbed apply for /lab/testbed.toml, since 2026-12-06T10:00:00Z)`
    pub fn describe(&self) -> String {
        format!("pid {} (testbed {} for {}, since {})", self.pid, self.command, self.config.display(), self.since)
    }

    /// Whether the process that wrote this is still the one running under its pid.
    fn still_running(&self) -> bool {
        match (start_time(self.pid), self.start_time) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The start time of process `pid` in clock ticks since boot, or None when there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: count from the last.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Held while an apply or destroy runs. Dropping it empties the file and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

/// The locks of every world a run changes, and what the run should be told about them.
#[derive(Debug)]
pub struct RunLocks {
    _held: Vec<RunLock>,
    /// Notes for the user: a previous run that ended without releasing its lock.
    pub notes: Vec<String>,
}

impl RunLocks {
    /// Takes the lock of each world in turn (always in the order given, so two runs never wait on each
    /// other), waiting up to `timeout` for each. On a refusal, the locks already taken are released.
    pub fn acquire(worlds: &[World], holder: &Holder, timeout: Duration) -> Result<RunLocks, CliError> {
        let mut held = Vec::new();
        let mut notes = Vec::new();
        for world in worlds {
            let (lock, note) = RunLock::acquire(world, holder, timeout)?;
            held.push(lock);
            notes.extend(note);
        }
        Ok(RunLocks { _held: held, notes })
    }
}

impl RunLock {
    /// Takes `world`'s lock, waiting up to `timeout` for its holder to finish; or says who holds it.
    pub fn acquire(world: &World, holder: &Holder, timeout: Duration) -> Result<(RunLock, Option<String>), CliError> {
        let path = world.lock_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        }
        let mut file = open(&path)?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(RETRY),
                Err(TryLockError::WouldBlock) => {
                    return Err(CliError::Locked {
                        world: world.describe(),
                        path,
                        holder: wait_for_holder(&mut file).map(|h| h.describe()),
                        waited: timeout,
                    })
                }
                Err(TryLockError::Error(e)) => return Err(CliError::io(&path, e)),
            }
        }
        // Ours now. What is left in the file was written by a run that never released the lock.
        let note = read_holder(&mut file).map(|last| {
            let whether = if last.still_running() {
                format!("process {} is still running but no longer holds it", last.pid)
            } else {
                "it was killed or crashed".to_owned()
            };
            format!(
                "the last run on {} ({}) ended without releasing its lock: {whether}; what it changed is observed \
                 again now",
                world.describe(),
                last.describe()
            )
        });
        let record = serde_json::to_string(holder).expect("a holder serializes");
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(format!("{record}\n").as_bytes()));
        written.map_err(|e| CliError::io(&path, e))?;
        Ok((RunLock { file }, note))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied while still held: the next run knows this one finished. The lock goes with the file.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Opens (or creates) a lock file without following a symbolic link: in a shared directory like /run/lock,
/// a link planted there must not make testbed write elsewhere.
fn open(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| CliError::io(path, e))
}

/// The holder of a lock that was just refused. A run writes its name just after it takes the lock: one
/// caught in between is given a moment to.
fn wait_for_holder(file: &mut File) -> Option<Holder> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match read_holder(file) {
            Some(h) => return Some(h),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => return None,
        }
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(dir: &Path) -> World {
        World::Simulated { sim_state: dir.join("sim.json") }
    }

    fn holder(command: &str) -> Holder {
        Holder::this_run(command, Path::new("/lab/testbed.toml"))
    }

    #[test]
    fn a_second_holder_is_refused_by_name_and_the_lock_goes_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (first, note) = RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::ZERO).unwrap();
        assert!(note.is_none());
        // The same process opening the file again is a second open file: flock refuses it like another run.
        let err = RunLock::acquire(&sim(dir.path()), &holder("destroy"), Duration::ZERO).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains("testbed apply for /lab/testbed.toml"), "{text}");
        drop(first);
        let (_again, note) = RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::ZERO).unwrap();
        assert!(note.is_none(), "a released lock leaves nothing to report: {note:?}");
    }

    #[test]
    fn a_waiting_run_takes_the_lock_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::ZERO).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let took = RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::from_secs(10));
        release.join().unwrap();
        assert!(took.is_ok(), "{took:?}");
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let mut dead = holder("apply");
        // Above the kernel's largest pid: never a process.
        dead.pid = 4_194_304 + 1;
        std::fs::write(sim(dir.path()).lock_file(), serde_json::to_string(&dead).unwrap()).unwrap();
        let (_lock, note) = RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::ZERO).unwrap();
        let note = note.expect("a note");
        assert!(note.contains("ended without releasing its lock: it was killed or crashed"), "{note}");
    }

    #[test]
    fn a_lock_naming_a_pid_now_used_by_another_program_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut recorded = holder("apply");
        recorded.pid = other.id();
        // The recorded run started at another time than the program now under its pid.
        recorded.start_time = start_time(other.id()).map(|t| t + 1);
        std::fs::write(sim(dir.path()).lock_file(), serde_json::to_string(&recorded).unwrap()).unwrap();
        let got = RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::ZERO);
        other.kill().unwrap();
        let _ = other.wait();
        let (_lock, note) = got.unwrap();
        assert!(note.unwrap().contains("it was killed or crashed"));
    }

    #[test]
    fn two_configs_sharing_a_simulated_machine_share_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared.json");
        let a = World::Simulated { sim_state: shared.clone() };
        let b = World::Simulated { sim_state: dir.path().join("elsewhere/../shared.json") };
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        let _held = RunLock::acquire(&a, &holder("apply"), Duration::ZERO).unwrap();
        assert!(RunLock::acquire(&b, &holder("apply"), Duration::ZERO).is_err());
    }

    #[test]
    fn a_symbolic_link_in_place_of_the_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, sim(dir.path()).lock_file()).unwrap();
        assert!(RunLock::acquire(&sim(dir.path()), &holder("apply"), Duration::ZERO).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn the_start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let me = start_time(std::process::id());
        assert!(me.is_some_and(|t| t > 0));
        assert_eq!(start_time(4_194_305), None);
    }

    #[test]
    fn long_socket_paths_give_bounded_distinct_file_names() {
        let a = file_name_part(&format!("/{}/a/unix.socket", "x".repeat(300)));
        let b = file_name_part(&format!("/{}/b/unix.socket", "x".repeat(300)));
        assert!(a.len() < 160 && a != b, "{a} {b}");
        assert_eq!(file_name_part("/var/snap/lxd/common/lxd/unix.socket"), "-var-snap-lxd-common-lxd-unix.socket");
    }
}
