//! `corral-logger FILE`: run by containerd's shim for each container task (see `copier.rs`).

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(first), second) = (args.next(), args.next()) else {
        eprintln!("usage: corral-logger FILE (started by containerd's shim, stdio on fds 3 and 4)");
        std::process::exit(2);
    };
    // The shim passes `?logger=FILE` as the two arguments `logger FILE`.
    let path = match second {
        Some(p) if first == corral_logger::copier::SUBCOMMAND => p,
        _ => first,
    };
    if let Err(e) = corral_logger::copier::run(std::path::Path::new(&path)) {
        eprintln!("corral-logger: {e}");
        std::process::exit(1);
    }
}
