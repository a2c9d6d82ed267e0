//! `broker-ops db migrate`: create the mirror table of the contracts, explicitly.

use clap::Subcommand;

use broker_ops::exit::Outcome;

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the mirror table (contracts.table), its schema and indexes when missing. Idempotent.
    Migrate {
        /// Print the SQL; connect to nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cmd: DbCommand, ctx: &Ctx) -> anyhow::Result<Outcome> {
    match cmd {
        DbCommand::Migrate { dry_run } => {
            let report = broker_ops::mirror::migrate::run(&ctx.config, dry_run).await?;
            ctx.render(&report)?;
            Ok(Outcome::Done)
        }
    }
}
