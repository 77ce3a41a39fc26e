//! The `weft` binary: one executable whose subcommands run every part of the mesh
//! (control plane, node proxy, CLI tools). It only wires crates together; the logic lives
//! in the library crates.

mod cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Installed as `weft-cni` in the CNI bin dir, the binary is the CNI plugin: a container
    // runtime runs it per pod sandbox, so it starts nothing else.
    if invoked_as_cni_plugin() {
        return weft_cni::plugin::main();
    }
    // One crypto provider for the whole process, chosen before any TLS config is built.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("weft: a rustls crypto provider was already installed");
    }
    let cli = cmd::Cli::parse();
    cmd::init_tracing(cli.log_level.as_deref());
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn invoked_as_cni_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .is_some_and(|argv0| argv0.file_name() == Some(weft_cni::PLUGIN_TYPE.as_ref()))
}
