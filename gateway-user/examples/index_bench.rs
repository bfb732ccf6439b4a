//! Builds an index of synthetic sessions for `cargo xtask bench` (the `index` row):
//! `index_bench PATH COUNT` writes COUNT sessions, one a second up to now, through the
//! library's own index writer, then marks the index as up to date with its (synthetic) topic.

use std::path::PathBuf;

use anyhow::Context as _;
use tollgate::index::{IndexDb, PartitionProgress, synthetic::Synthetic};

/// Sessions per transaction.
const CHUNK: u64 = 2_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().context("usage: index_bench PATH COUNT")?);
    let count: u64 = args
        .next()
        .context("usage: index_bench PATH COUNT")?
        .parse()
        .context("COUNT")?;
    let _ = std::fs::remove_file(&path);
    let mut db = IndexDb::open(&path)?;
    let base = time::OffsetDateTime::now_utc()
        - time::Duration::seconds(i64::try_from(count).context("COUNT")?);
    let mut n = 0;
    while n < count {
        let end = (n + CHUNK).min(count);
        let events: Vec<_> = (n..end)
            .flat_map(|i| Synthetic::nth(i, base).events())
            .collect();
        db.apply(&events, "bench", &[])?;
        n = end;
    }
    let offsets = i64::try_from(count).context("COUNT")?;
    db.apply(
        &[],
        "bench",
        &[PartitionProgress {
            partition: 0,
            next_offset: offsets,
            high_watermark: offsets,
        }],
    )?;
    println!(
        "{} sessions, {} statements in {}",
        db.session_count()?,
        db.statement_count()?,
        path.display()
    );
    Ok(())
}
