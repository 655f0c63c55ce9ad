//! A check every binary's tests run on its clap command tree: each flag has
//! a help line, and that line (or clap) names its default unless the flag is
//! required, positional or a switch. Kept here so every binary (`rtmc`,
//! `loadgen`, `chaos`, `gate`, `rtmc-stack`) holds its help to one rule.

/// The test every binary runs on its command tree: every argument keeps the
/// rule, and clap's own consistency checks pass.
///
/// # Panics
/// Naming the arguments that break the rule, or on clap's first complaint.
pub fn assert_documented(cmd: clap::Command) {
    let missing = args_without_help_or_default(&cmd);
    assert!(
        missing.is_empty(),
        "arguments without help or default: {missing:?}"
    );
    cmd.debug_assert();
}

/// `path --flag` of every argument under `cmd` that breaks the rule.
pub fn args_without_help_or_default(cmd: &clap::Command) -> Vec<String> {
    let mut missing = Vec::new();
    walk(cmd, cmd.get_name(), &mut missing);
    missing
}

fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let exempt = arg.is_required_set()
            || arg.is_positional()
            || matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let has_default = !arg.get_default_values().is_empty() || help.contains("[default:");
        if help.is_empty() || !(exempt || has_default) {
            missing.push(format!("{path} --{id}"));
        }
    }
    for sub in cmd.get_subcommands() {
        walk(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

/// Renders the help of `cmd` and of every subcommand under it, as
/// `--help` prints it, and panics naming each argument whose entry shows
/// `[default: …]` more than once (a default written in the help text and
/// given to clap as well).
pub fn assert_no_default_twice(cmd: clap::Command) {
    let twice = defaults_shown_twice(cmd);
    assert!(
        twice.is_empty(),
        "help entries naming a default twice: {twice:#?}"
    );
}

/// `path: entry` of every help entry under `cmd` that names a default twice.
pub fn defaults_shown_twice(mut cmd: clap::Command) -> Vec<String> {
    cmd.build();
    let mut found = Vec::new();
    collect_twice(&mut cmd, &mut found);
    found
}

fn collect_twice(cmd: &mut clap::Command, found: &mut Vec<String>) {
    let path = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_owned();
    let help = cmd.render_long_help().to_string();
    // An entry starts at a line that begins (after its indent) with `-` or
    // `<`; its help runs on until the next entry or heading.
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') || t.starts_with('<') || !line.starts_with(' ') || entries.is_empty()
        {
            entries.push(String::new());
        }
        if let Some(e) = entries.last_mut() {
            e.push_str(t);
            e.push(' ');
        }
    }
    for e in entries {
        if e.matches("[default:").count() > 1 {
            found.push(format!("{path}: {}", e.trim()));
        }
    }
    for sub in cmd.get_subcommands_mut() {
        collect_twice(sub, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flags_without_help_or_default() {
        let cmd = clap::Command::new("x")
            .arg(clap::Arg::new("bare").long("bare"))
            .arg(clap::Arg::new("said").long("said").help("n [default: 1]"))
            .arg(
                clap::Arg::new("vague")
                    .long("vague")
                    .help("no default named"),
            )
            .arg(
                clap::Arg::new("req")
                    .long("req")
                    .help("needed")
                    .required(true),
            );
        assert_eq!(
            args_without_help_or_default(&cmd),
            ["x --bare", "x --vague"]
        );
    }

    #[test]
    fn finds_a_default_named_twice_in_a_subcommands_help() {
        let sub = clap::Command::new("sub")
            .arg(
                clap::Arg::new("rounds")
                    .long("rounds")
                    .help("rounds [default: 5]")
                    .default_value("5"),
            )
            .arg(
                clap::Arg::new("once")
                    .long("once")
                    .help("said once")
                    .default_value("1"),
            );
        let cmd = clap::Command::new("x").subcommand(sub);
        let twice = defaults_shown_twice(cmd);
        assert_eq!(twice.len(), 1, "{twice:#?}");
        assert!(twice[0].contains("--rounds"), "{twice:#?}");
    }
}
