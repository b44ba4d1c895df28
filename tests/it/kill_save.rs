//! A run killed with SIGKILL in the middle of writing a checkpoint (its
//! temporary file exists, the rename has not happened) loses nothing saved
//! before: `last_checkpoint` and the newest complete checkpoint still name
//! the previous save and load, `--resume` continues from there with the
//! uninterrupted run's losses, and the unfinished save's temporary file is
//! neither taken for a checkpoint nor left behind.
//!
//! How the kill lands inside the save, every time: the engine runs with
//! `DETC_TEST_PAUSE_IN_SAVE=iter_4.pth:600000`, the checkpoint writer's
//! fault-injection point (src/checkpoint/writer.rs), so the save of
//! iteration 4 writes and fsyncs its temporary file `.iter_4.pth.tmp<pid>`
//! and then waits ten minutes before the rename. The test waits until that
//! file is complete (it ends with the zip's end-of-central-directory record)
//! and kills the process group with SIGKILL: the rename cannot have
//! happened. A temporary file that is complete and loadable is the hardest
//! case for "not taken for a checkpoint"; a truncated one fails to load
//! anyway.
//!
//! Without an engine hook: a FIFO at the temporary path (its name is
//! predictable once the engine's pid is) would block the writer, but the zip
//! writer seeks and a FIFO cannot; catching the file between its creation
//! and the rename by polling depends on timing.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{assert_same_losses, root, saved_iter, shapes_data};

/// tests/it/train.rs's settings that keep the demo config tiny (2
/// iterations per epoch), with a checkpoint after every iteration and no
/// validation.
const TINY: &[&str] = &[
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
    "val_dataloader.num_workers=0",
    "test_dataloader.num_workers=0",
    "train_cfg.val_interval=1",
    "default_hooks.logger.interval=1",
    "default_hooks.checkpoint.interval=1",
    "default_hooks.checkpoint.max_keep_ckpts=2",
    "default_hooks.checkpoint.by_epoch=False",
    "val_dataloader=None",
    "val_evaluator=None",
    "val_cfg=None",
    "train_cfg.max_epochs=3",
];

/// `detc run` of the demo config into `work_dir` (relative to `dir`).
fn run_cmd(dir: &Path, work_dir: &str, engine: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(snapbox::cmd::cargo_bin!("detc"));
    cmd.current_dir(dir)
        .env("DETC_ENGINE", engine)
        .arg("run")
        .arg(root().join("configs/demo/queryinst_r18_shapes.yaml"))
        .args(["--work-dir", work_dir]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.arg("--cfg-options").args(TINY);
    cmd
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...), `None`
/// once the process is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Polls `done` every 5 ms until it holds, failing after two minutes or when
/// the `detc` run (output in `log`) ends first.
fn wait_for(what: &str, child: &mut Child, log: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the run ended ({status}) before {what}:\n{log}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The file names in `dir` (not its run folders), sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| !e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("queryinst_r18_shapes."))
        .collect();
    names.sort();
    names
}

/// Whether `path` ends with a zip end-of-central-directory record (no
/// archive comment): the writer's last bytes, so the file is complete.
fn zip_is_complete(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut tail = [0u8; 22];
    file.seek(SeekFrom::End(-22)).is_ok()
        && file.read_exact(&mut tail).is_ok()
        && tail.starts_with(b"PK\x05\x06")
}

#[test]
fn sigkill_while_saving_a_checkpoint_then_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    shapes_data(dir, 8, 4);
    let engine = PathBuf::from(env!("CARGO_BIN_EXE_detc-engine"));
    run_ok(run_cmd(dir, "straight", &engine, false));

    // The killed run stops in the iteration-4 save, its temporary file
    // complete and fsynced, the rename not done; SIGKILL to detc and its engine.
    let log = dir.join("killed-run.log");
    let mut cmd = run_cmd(dir, "killed", &engine, false);
    cmd.env("DETC_TEST_PAUSE_IN_SAVE", "iter_4.pth:600000")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let killed = dir.join("killed");
    let mut temp = PathBuf::new();
    wait_for("the iteration-4 save paused", &mut child, &log, || {
        let found = std::fs::read_dir(&killed)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix(".iter_4.pth.tmp")
                    .is_some_and(|pid| pid.parse::<u32>().is_ok())
            });
        found.is_some_and(|e| {
            temp = e.path();
            zip_is_complete(&temp)
        })
    });
    let status = Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
    let pid: u32 = temp
        .to_string_lossy()
        .rsplit_once(".tmp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    // Orphaned by detc's death, the engine may linger as a zombie: dead either way.
    let start = Instant::now();
    while proc_state(pid).is_some_and(|s| s != 'Z') {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the engine survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // What the kill left: the previous saves, named, and the never-renamed temp.
    let temp_name = temp.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        files(&killed),
        [
            temp_name.as_str(),
            "iter_2.pth",
            "iter_3.pth",
            "last_checkpoint"
        ]
    );
    let last = std::fs::read_to_string(killed.join("last_checkpoint")).unwrap();
    assert!(
        last.trim_end().ends_with("iter_3.pth"),
        "last_checkpoint: {last}"
    );
    assert_eq!(saved_iter(&dir.join(last.trim_end())), 3);
    assert_eq!(
        saved_iter(&temp),
        4,
        "the temporary file holds the whole iteration-4 checkpoint"
    );

    // `--resume` continues from iteration 3, ignores the temp file, and the
    // iteration-4 save that replaces it deletes it.
    let log = run_ok(run_cmd(dir, "killed", &engine, true));
    assert!(
        log.contains("resumed from ") && log.contains("iter_3.pth: epoch 1, iter 3"),
        "{log}"
    );
    assert_eq!(
        files(&killed),
        ["iter_5.pth", "iter_6.pth", "last_checkpoint"],
        "max_keep_ckpts: 2"
    );
    let last = std::fs::read_to_string(killed.join("last_checkpoint")).unwrap();
    assert!(
        last.trim_end().ends_with("iter_6.pth"),
        "last_checkpoint: {last}"
    );

    // Every loss the killed and the resumed run logged is the uninterrupted run's.
    assert_same_losses(&dir.join("straight"), &killed, 6);
}
