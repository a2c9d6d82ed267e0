//! The docs are the script: every ```` ```sh drill ```` block in README.md and docs/ is run here,
//! as a reader would paste it, against the binary just built and the real Redis and Postgres. A
//! line whose comment says `# exit N` must end with exit code N; any other line must succeed.
//! The blocks run one after another (they share the sandbox's documented port, 8790), each in a
//! directory of its own, with its Redis keys and BullMQ queue under a prefix of their own.

use std::path::{Path, PathBuf};

use crate::support;

struct Drill {
    file: String,
    line: usize,
    body: String,
}

fn drills() -> Vec<Drill> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines = text.lines().enumerate();
        while let Some((i, l)) = lines.next() {
            if l.trim() != "```sh drill" {
                continue;
            }
            let body: Vec<&str> = lines.by_ref().map(|(_, l)| l).take_while(|l| l.trim() != "```").collect();
            let file = f.strip_prefix(root).unwrap().display().to_string();
            out.push(Drill { file, line: i + 1, body: body.join("\n") });
        }
    }
    out
}

/// The exit code a line's comment promises (`# exit 2: ...`), else 0.
fn expected(line: &str) -> i32 {
    line.split_once(" # ")
        .and_then(|(_, comment)| comment.trim().strip_prefix("exit "))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The block as a script that stops at the first line ending other than its doc says.
fn script(d: &Drill) -> String {
    let mut s = String::from("set -u\ntrap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n");
    for (i, line) in d.body.lines().enumerate() {
        let code = line.split_once(" # ").map_or(line, |(c, _)| c).trim_end();
        if code.is_empty() || code.trim_start().starts_with('#') || code.ends_with('&') || code.starts_with("kill %") {
            s.push_str(line);
            s.push('\n');
            continue;
        }
        let want = expected(line);
        let at = format!("{}:{}", d.file, d.line + 1 + i);
        s.push_str(&format!(
            "{code}\n__rc=$?; if [ $__rc -ne {want} ]; then echo \"DRILL {at}: exit $__rc, the doc says {want}: {}\" >&2; exit 1; fi\n",
            code.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`")
        ));
    }
    s
}

#[tokio::test]
async fn every_drill_in_the_docs_runs_as_written() {
    let all = drills();
    let named: Vec<String> = all.iter().map(|d| format!("{}:{}", d.file, d.line)).collect();
    for file in ["docs/monitor.md", "docs/mirror.md", "docs/rollout.md", "docs/runbook.md", "docs/sandbox.md"] {
        assert!(named.iter().any(|n| n.starts_with(file)), "{file} has no drill block: {named:?}");
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_broker-ops"));
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    for d in &all {
        let dir = tempfile::tempdir().unwrap();
        let prefix = support::prefix("drill");
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c").arg(script(d)).current_dir(dir.path()).env_clear();
        cmd.env("PATH", &path).env("HOME", dir.path()).env("NO_COLOR", "1");
        // Apart from other tests' keys; a drill that sets its own prefix keeps it.
        cmd.env("REDIS_KEY_PREFIX", &prefix).env("BULL_PREFIX", format!("{prefix}bull"));
        let r = support::run(cmd).await;
        assert_eq!(
            r.code, 0,
            "the drill at {}:{} fails as written:\n{}\n--- stderr\n{}",
            d.file, d.line, r.stdout, r.stderr
        );
    }
}

#[test]
fn the_exit_code_a_comment_promises() {
    assert_eq!(expected("broker-ops monitor        # exit 2: CRITICAL"), 2);
    assert_eq!(expected("broker-ops monitor        # healthy"), 0);
    assert_eq!(expected("curl -s x | grep -q y"), 0);
}
