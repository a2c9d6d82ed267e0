//! The one outcome policy, held to docs/exit-codes.md: every command of the binary's tree is in
//! its table with its convention, and a usage error (found by clap or by the command, or a
//! format the command does not render) exits 2 in every ordinary command and 3 in every probe.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{bin, run};

/// `command → convention` from the "## Every command" table of docs/exit-codes.md.
fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/exit-codes.md")).unwrap();
    let section = doc.split("\n## Every command\n").nth(1).expect("docs/exit-codes.md has \"## Every command\"");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

/// Every runnable command path of the real tree (groups such as `rollout` alone are not).
async fn tree(dir: &Path) -> Vec<String> {
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut out = Vec::new();
    while let Some(path) = queue.pop() {
        let mut cmd = bin(dir);
        cmd.args(&path).arg("--help");
        let help = run(cmd).await.stdout;
        let subs: Vec<String> = help
            .split("\nCommands:\n")
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.strip_prefix("  ").filter(|r| !r.starts_with(' '))?.split_whitespace().next())
            .map(str::to_string)
            .filter(|c| c != "help")
            .collect();
        // A group needs a subcommand; `monitor` runs and has one (`rules`).
        let runnable = !path.is_empty() && (subs.is_empty() || !help.contains("<COMMAND>\n"));
        if runnable {
            out.push(path.join(" "));
        }
        queue.extend(subs.into_iter().map(|s| [path.clone(), vec![s]].concat()));
    }
    out.sort();
    out
}

#[tokio::test]
async fn every_command_is_in_the_table_and_usage_errors_exit_by_its_convention() {
    let dir = tempfile::tempdir().unwrap();
    let table = documented();
    let commands = tree(dir.path()).await;
    let undocumented: Vec<&String> = commands.iter().filter(|c| !table.contains_key(*c)).collect();
    assert!(undocumented.is_empty(), "commands missing from docs/exit-codes.md: {undocumented:?}");
    let stale: Vec<&String> = table.keys().filter(|c| !commands.contains(c)).collect();
    assert!(stale.is_empty(), "docs/exit-codes.md names commands the binary does not have: {stale:?}");
    for (command, convention) in &table {
        let usage = match convention.as_str() {
            "ordinary" => 2,
            "probe" => 3,
            other => panic!("{command}: convention {other:?} is neither ordinary nor probe"),
        };
        let words: Vec<&str> = command.split(' ').collect();
        let mut c = bin(dir.path());
        c.args(&words).arg("--no-such-flag");
        let r = run(c).await;
        assert_eq!(r.code, usage, "{command} --no-such-flag ({convention}): {}", r.stderr);
        if convention == "ordinary" {
            let mut c = bin(dir.path());
            c.args(["-o", "nagios"]).args(&words);
            let r = run(c).await;
            assert_eq!(r.code, 2, "-o nagios {command}: {}", r.stderr);
            let said = ["is not a format this command renders", "required arguments were not provided"];
            assert!(said.iter().any(|s| r.stderr.contains(s)), "{command}: {}", r.stderr);
        }
    }
}

/// Usage errors the commands find themselves (not clap) follow the same rule.
#[tokio::test]
async fn usage_errors_found_by_the_command_exit_two_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["token", "revoke", "--jti", "j-1", "--until", "garbage"][..], "--until"),
        (&["-o", "json", "token", "verify", "--batch"], "it renders: table, ndjson"),
        (&["mirror", "webhook-test", "ftp://example.invalid/hook"], "is not an http(s) URL"),
        (&["sla", "report", "--since", "1h", "--until", "2h"], "before it starts"),
    ] {
        let mut c = bin(dir.path());
        c.args(args).env("TOKEN_SECRET", "0123456789abcdef0123456789abcdef").env("ABLY_API_KEY", "a.b:c");
        let r = run(c).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}
