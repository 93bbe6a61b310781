//! `corral scale --replicas=N KIND/NAME`.

use super::{outln, single_target, Ctx};
use crate::args::ScaleArgs;
use crate::error::{local, Result};

pub async fn run(ctx: &Ctx, a: &ScaleArgs) -> Result<()> {
    if a.replicas < 0 {
        return Err(local(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0",
        ));
    }
    let (info, name) = single_target(&a.resources)?;
    if !info.has_scale {
        return Err(local(format!(
            "cannot scale {}: the resource has no scale subresource",
            crate::error::resource_name(info)
        )));
    }
    ctx.client
        .scale(info, &ctx.ns_for(info), &name, a.replicas)
        .await
        .map_err(|e| ctx.about(info, &name, &e))?;
    outln(&format!("{}/{name} scaled", info.qualified()))
}
