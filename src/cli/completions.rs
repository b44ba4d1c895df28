//! `detc completions SHELL`: the shell's completion script for every
//! subcommand and flag, generated from the clap definitions.
//!
//! ```text
//! detc completions bash > ~/.local/share/bash-completion/completions/detc
//! detc completions zsh > "${fpath[1]}/_detc"
//! detc completions fish > ~/.config/fish/completions/detc.fish
//! ```

use clap::CommandFactory;

#[derive(clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut super::Cli::command(), "detc", &mut script);
    super::print_stdout(&String::from_utf8_lossy(&script))?;
    Ok(super::EXIT_OK)
}
