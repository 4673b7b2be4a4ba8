//! `fira compare --jobs N`: the unfinished runs trained side by side, each in a child process of
//! this binary (`fira train --config <its options>`), since one training on a CPU backend keeps
//! about one core busy. Each child writes its progress to `<out-dir>/<run>.log`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::Entry;
use crate::exit::Failure;
use crate::options::TrainOptions;
use crate::run_dir::{RunFiles, write_atomically};
use crate::train::finished_summary;

/// A child training one run.
struct Running<'a> {
    name: &'a str,
    log: PathBuf,
    child: Child,
}

/// Trains every entry without a summary, at most `jobs` at a time; returns when all have ended.
/// A run that fails does not stop the others; the first failure is returned at the end.
pub fn train(entries: &[Entry], out_dir: &Path, jobs: usize) -> Result<(), Failure> {
    let program = std::env::current_exe().map_err(|e| Failure::Run(anyhow::anyhow!("locating this program to start the runs: {e}")))?;
    std::fs::create_dir_all(out_dir).map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", out_dir.display())))?;
    let mut queue = entries.iter().filter(|e| finished_summary(&RunFiles::new(out_dir.join(&e.name))).is_none());
    let mut running: Vec<Running> = Vec::new();
    let mut failure = None;
    loop {
        while running.len() < jobs {
            let Some(entry) = queue.next() else { break };
            running.push(start(&program, entry, out_dir)?);
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut i = 0;
        while i < running.len() {
            let status = running[i].child.try_wait().map_err(|e| Failure::Run(anyhow::anyhow!("waiting for {}: {e}", running[i].name)))?;
            let Some(status) = status else {
                i += 1;
                continue;
            };
            let run = running.remove(i);
            if status.success() {
                println!("== {}: done", run.name);
            } else {
                println!("== {}: failed ({status}), see {}", run.name, run.log.display());
                let tail = std::fs::read_to_string(&run.log).unwrap_or_default();
                let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
                let error = anyhow::anyhow!("the run `{}` failed ({status}); its log {}: {last}", run.name, run.log.display());
                failure.get_or_insert(if status.code() == Some(2) { Failure::Input(error) } else { Failure::Run(error) });
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Starts `fira train` for `entry` (continuing it if its directory holds a run), with the options
/// settled here and written next to its directory.
fn start<'a>(program: &Path, entry: &'a Entry, out_dir: &Path) -> Result<Running<'a>, Failure> {
    let files = RunFiles::new(out_dir.join(&entry.name));
    let resume = files.options().is_file();
    let mut args = entry.args.clone();
    args.run_dir = Some(files.dir.clone());
    let options = TrainOptions::resolve(&super::budget(), &args).map_err(Failure::Input)?;
    let options_path = out_dir.join(format!("{}.options.json", entry.name));
    let json = serde_json::to_string_pretty(&options).expect("options serialise");
    write_atomically(&options_path, json.as_bytes()).map_err(Failure::Run)?;
    let log = out_dir.join(format!("{}.log", entry.name));
    let file = File::create(&log).map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", log.display())))?;
    let stderr = file.try_clone().map_err(|e| Failure::Run(anyhow::anyhow!("{}: {e}", log.display())))?;
    let mut command = Command::new(program);
    command.arg("train").arg("--config").arg(&options_path).stdout(file).stderr(stderr);
    if resume {
        command.arg("--resume");
    }
    let child = command.spawn().map_err(|e| Failure::Run(anyhow::anyhow!("starting the run `{}`: {e}", entry.name)))?;
    println!("== {}{}: started in its own process, log {}", entry.name, if resume { " (continuing)" } else { "" }, log.display());
    Ok(Running { name: &entry.name, log, child })
}
