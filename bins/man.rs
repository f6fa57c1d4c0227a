//! `--man-page`: the program's manual page (roff), generated from its clap definition, so
//! `man nemo-bridge` always says what `--help` says. Shared by the three binaries; the Debian
//! package build (`scripts/package-deb.sh`) calls it. Hidden from `--help`.

use std::io::Write;
use std::process::ExitCode;

/// When the only argument is `--man-page`, write the manual page of `C` under the installed
/// name `name` (e.g. `nemo-bridge`) to standard output and return the exit code; else `None`.
pub fn print_if_asked<C: clap::CommandFactory>(name: &'static str) -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new("--man-page")) || args.next().is_some() {
        return None;
    }
    let cmd = C::command().name(name).bin_name(name);
    let mut out = Vec::new();
    let written = clap_mangen::Man::new(cmd)
        .render(&mut out)
        .and_then(|()| std::io::stdout().write_all(&out));
    Some(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: cannot write the manual page: {e}");
            ExitCode::FAILURE
        }
    })
}
