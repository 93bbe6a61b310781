//! Builds Corral's test images (workshop app v0.2.0/v0.3.0, sleeper, crasher) as OCI archives.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Build Corral's test images as OCI archives from busybox-static")]
struct Args {
    /// Directory the archives are written to.
    #[arg(long, default_value = "images/out")]
    out: PathBuf,
    /// The static busybox binary to put in the images.
    #[arg(long, default_value = corral_testimages::DEFAULT_BUSYBOX)]
    busybox: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for path in corral_testimages::build_standard_images(&args.busybox, &args.out)? {
        println!("{}", path.display());
    }
    Ok(())
}
