//! scunblock-gen: writes scunblock's man pages and shell completions from its
//! clap definition (src/cli/args.rs, included below: the CLI is the binary's,
//! not the library's), so that neither can drift from `--help`. scripts/package runs it before `cargo deb`.
//!
//! Usage: `scunblock-gen OUT_DIR` writes
//! - `OUT_DIR/man/scunblock.1` and one `scunblock-COMMAND.1` per subcommand,
//! - `OUT_DIR/completions/scunblock.bash`, `_scunblock` (zsh), `scunblock.fish`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// scunblock's clap definition, the very file its binary compiles. Only the
/// definition is used here, not the helpers the binary calls on it.
#[path = "../../../src/cli/args.rs"]
#[allow(dead_code)]
mod args;

/// The command as the pages describe it.
fn command() -> clap::Command {
    // The man pages are built once per package: the git revision of the long
    // `--version` would make them differ from build to build, and the
    // VERSION section only needs the release. `help` has no page of its own.
    args::Cli::command()
        .long_version(None::<&str>)
        .disable_help_subcommand(true)
}

/// The completion files: (shell, file name) in Debian's naming; scripts/package
/// and Cargo.toml's `[package.metadata.deb]` place them.
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "scunblock.bash"),
    (Shell::Zsh, "_scunblock"),
    (Shell::Fish, "scunblock.fish"),
];

/// The man pages: `scunblock.1` first, then one per subcommand.
fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = command();
    cmd.build();
    let mut pages = Vec::new();
    let mut all = vec![cmd.clone()];
    all.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for c in all {
        let man = clap_mangen::Man::new(c);
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        pages.push((man.get_filename(), roff));
    }
    Ok(pages)
}

fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "scunblock", &mut out);
    out
}

fn write_all(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    fs::create_dir_all(&man_dir)?;
    fs::create_dir_all(&comp_dir)?;
    for (name, roff) in man_pages()? {
        let path = man_dir.join(name);
        fs::write(&path, roff)?;
        written.push(path);
    }
    for (shell, name) in COMPLETIONS {
        let path = comp_dir.join(name);
        fs::write(&path, completion(shell))?;
        written.push(path);
    }
    Ok(written)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: scunblock-gen OUT_DIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scunblock-gen: {}: {e}", Path::new(&out).display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subcommands() -> Vec<String> {
        let names: Vec<String> = command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        // The list the docs describe (docs/cli.md); a new one must be added there too.
        assert_eq!(
            names,
            ["readers", "info", "unblock", "auth", "watch", "respond"]
        );
        names
    }

    fn page(name: &str) -> String {
        let pages = man_pages().expect("render");
        let (_, roff) = pages
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no page {name}"));
        String::from_utf8(roff).expect("utf-8")
    }

    #[test]
    fn the_man_page_lists_every_subcommand() {
        let main = page("scunblock.1");
        assert!(main.contains("\n.TH scunblock 1 "), "{main}");
        for sub in subcommands() {
            assert!(
                main.contains(&format!("scunblock\\-{sub}(1)")),
                "scunblock.1 does not mention {sub}:\n{main}"
            );
        }
    }

    #[test]
    fn every_subcommand_has_a_page_with_each_of_its_long_options() {
        let mut cmd = command();
        cmd.build();
        for sub in cmd.get_subcommands() {
            let text = page(&format!("scunblock-{}.1", sub.get_name()));
            let longs: Vec<&str> = sub.get_arguments().filter_map(|a| a.get_long()).collect();
            assert!(!longs.is_empty(), "{} has no long option", sub.get_name());
            for long in longs {
                // roff escapes '-' as '\-'
                let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(
                    text.contains(&escaped),
                    "scunblock-{}.1 lacks --{long}",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn the_man_page_version_is_the_release_only() {
        let main = page("scunblock.1");
        let version = format!("v{}", env!("CARGO_PKG_VERSION"));
        assert!(main.contains(&version), "{main}");
        assert!(!main.contains("features:"), "{main}");
    }

    #[test]
    fn every_completion_names_every_subcommand() {
        for (shell, _) in COMPLETIONS {
            let text = String::from_utf8(completion(shell)).expect("utf-8");
            for sub in subcommands() {
                assert!(text.contains(&sub), "{shell} completion lacks {sub}");
            }
        }
        let bash = String::from_utf8(completion(Shell::Bash)).expect("utf-8");
        assert!(bash.contains("complete -F _scunblock"), "{bash}");
    }

    #[test]
    fn write_all_writes_every_file() {
        let dir = std::env::temp_dir().join(format!("scunblock-gen-{}", std::process::id()));
        let files = write_all(&dir).expect("write");
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        let _ = fs::remove_dir_all(&dir);
        for want in [
            "man/scunblock.1",
            "man/scunblock-unblock.1",
            "completions/scunblock.bash",
            "completions/_scunblock",
            "completions/scunblock.fish",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
    }
}
