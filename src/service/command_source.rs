//! A program's standard output as a backup source: run without a shell, with a clean
//! environment (the server's own, which may hold the repository passphrase, is never
//! passed on), stdin closed, in `/`. The stream ends in error — so nothing is
//! committed — unless the program exits successfully; its last words on stderr say why.
//! The program leads a process group of its own: dropped before the end (a cancelled
//! job), the whole group is killed, so a shell's children do not live on.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// The most bytes of the program's stderr kept for the error.
const STDERR_TAIL: usize = 4096;
/// The search path the program gets.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct CommandOutput {
    program: String,
    child: Child,
    stdout: ChildStdout,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    finished: bool,
}

impl CommandOutput {
    /// Starts `argv[0]` with the rest as its arguments.
    pub fn spawn(argv: &[String]) -> io::Result<CommandOutput> {
        let (program, arguments) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program given"))?;
        let mut child = Command::new(program)
            .args(arguments)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the program's output pipes are missing"));
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let stderr_reader = std::thread::Builder::new()
            .name("command-stderr".into())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buffer) {
                    let Some(read) = buffer.get(..n).filter(|r| !r.is_empty()) else {
                        return;
                    };
                    let mut kept = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    kept.extend(read);
                    let excess = kept.len().saturating_sub(STDERR_TAIL);
                    kept.drain(..excess);
                }
            })?;
        Ok(CommandOutput {
            program: program.clone(),
            child,
            stdout,
            stderr_tail,
            stderr_reader: Some(stderr_reader),
            finished: false,
        })
    }

    /// The end of the output: the exit status decides.
    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        let status = self.child.wait()?;
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if status.success() {
            return Ok(());
        }
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect::<Vec<u8>>();
        let said = String::from_utf8_lossy(&tail).trim().to_string();
        Err(io::Error::other(if said.is_empty() {
            format!("{} failed ({status})", self.program)
        } else {
            format!("{} failed ({status}): {said}", self.program)
        }))
    }
}

impl Read for CommandOutput {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let n = self.stdout.read(out)?;
        if n == 0 && !out.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for CommandOutput {
    fn drop(&mut self) {
        if !self.finished {
            // The group first (the program's children), then the program itself in
            // case it left its group.
            let pid = rustix::process::Pid::from_child(&self.child);
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> io::Result<Vec<u8>> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut output = CommandOutput::spawn(&argv)?;
        let mut bytes = Vec::new();
        output.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    #[test]
    fn the_output_of_a_successful_program_is_the_stream() {
        assert_eq!(run(&["printf", "a\\nb"]).unwrap(), b"a\nb");
    }

    #[test]
    fn a_failing_program_ends_the_stream_in_error_with_its_stderr() {
        let error = run(&[
            "sh",
            "-c",
            "echo partial; echo 'no such database' >&2; exit 3",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("no such database"), "{error}");
        assert!(error.contains("sh failed"), "{error}");
        assert!(run(&["/nonexistent/program"]).is_err());
    }

    #[test]
    fn dropped_early_the_program_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let script = format!(
            "sleep 60 & echo $! > {}; echo started; wait",
            marker.display()
        );
        let argv = vec!["sh".to_string(), "-c".to_string(), script];
        let mut output = CommandOutput::spawn(&argv).unwrap();
        let mut first = [0u8; 8];
        let n = output.read(&mut first).unwrap();
        assert_eq!(first.get(..n), Some(&b"started\n"[..]));
        let child: u32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(output);
        // The grandchild is gone once its parent reaped it or init did: poll briefly.
        let proc_entry = format!("/proc/{child}");
        let gone = (0..200).any(|_| {
            let alive = std::fs::read_to_string(format!("{proc_entry}/stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false);
            if alive {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "the program's child outlived it");
    }

    #[test]
    fn the_servers_environment_is_not_passed_on() {
        let env = String::from_utf8(run(&["env"]).unwrap()).unwrap();
        let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort_unstable();
        assert_eq!(names, ["LANG", "PATH"], "{env}");
    }
}
