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
}
