//! `Stats` as text: the summary `cma run` prints, for a program that wants
//! to show its heap on demand (`println!("{}", cma::stats())`). Formatted
//! with `core::fmt` alone: nothing is allocated, so it can be written from
//! anywhere, a signal handler's `write(2)` buffer included.
//!
//! `{}` shows the counters and the eight busiest size classes; `{:#}` shows
//! every size class that was used.

use core::fmt::{self, Write};

use super::leaks::Grouped;
use super::stats::{ClassStats, Stats};
use crate::slab::size_class::NUM_CLASSES;
use crate::util::stack_buf::StackBuf;

/// Bytes in a readable unit (`24.7 MiB`).
struct Human(u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let (mut v, mut u) = (self.0 as f64, 0);
        while v >= 1024.0 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        let mut text = StackBuf::<32>::new();
        let _ = if u == 0 {
            write!(text, "{} B", self.0)
        } else {
            write!(text, "{v:.1} {}", UNITS[u])
        };
        f.pad(core::str::from_utf8(text.as_bytes()).unwrap_or(""))
    }
}

/// Size classes shown by `{}`.
const BUSIEST: usize = 8;

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_use_blocks = self.allocations.saturating_sub(self.frees);
        writeln!(f, "allocations        {:>16}", Grouped(self.allocations))?;
        writeln!(f, "frees              {:>16}", Grouped(self.frees))?;
        writeln!(
            f,
            "peak bytes in use  {:>16}  ({})",
            Grouped(self.peak_bytes_in_use),
            Human(self.peak_bytes_in_use)
        )?;
        writeln!(
            f,
            "bytes in use       {:>16}  ({}) in {} blocks",
            Grouped(self.bytes_in_use),
            Human(self.bytes_in_use),
            Grouped(in_use_blocks)
        )?;
        writeln!(
            f,
            "large blocks       {:>16}  allocated, {} freed",
            Grouped(self.large_allocations),
            Grouped(self.large_frees)
        )?;
        writeln!(f, "thread heaps       {:>16}", Grouped(self.heaps as u64))?;
        writeln!(
            f,
            "memory mapped      {:>16}  ({}) + {} metadata",
            Grouped(self.mapped_bytes as u64),
            Human(self.mapped_bytes as u64),
            Human(self.metadata_bytes as u64)
        )?;
        if self.sampled_allocations != 0 {
            writeln!(
                f,
                "sampled blocks     {:>16}  (on guarded pages)",
                Grouped(self.sampled_allocations)
            )?;
        }
        // The used classes, busiest first (ties: smaller class first).
        let mut order = [0u8; NUM_CLASSES];
        let mut used = 0;
        for (i, c) in self.classes.iter().enumerate() {
            if c.allocations != 0 {
                order[used] = i as u8;
                used += 1;
            }
        }
        let order = &mut order[..used];
        order.sort_unstable_by(|&a, &b| {
            let (ca, cb) = (&self.classes[a as usize], &self.classes[b as usize]);
            cb.allocations.cmp(&ca.allocations).then(a.cmp(&b))
        });
        if used == 0 {
            return Ok(());
        }
        let shown = if f.alternate() {
            used
        } else {
            used.min(BUSIEST)
        };
        if f.alternate() {
            writeln!(f, "size classes, busiest first:")?;
        } else {
            writeln!(f, "busiest size classes:")?;
        }
        writeln!(
            f,
            "  class      block    allocations          frees      in use         peak"
        )?;
        for &i in &order[..shown] {
            let c: &ClassStats = &self.classes[i as usize];
            writeln!(
                f,
                "  {:>5} {:>10} {:>14} {:>14} {:>11} {:>12}",
                i,
                Human(c.block_size as u64),
                Grouped(c.allocations),
                Grouped(c.frees),
                Grouped(c.blocks_in_use),
                Grouped(c.peak_blocks_in_use)
            )?;
        }
        if shown < used {
            writeln!(
                f,
                "  ... {} more classes ({{:#}} shows them all)",
                used - shown
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        let mut classes = [ClassStats::default(); NUM_CLASSES];
        for (i, c) in classes.iter_mut().enumerate().take(10) {
            *c = ClassStats {
                block_size: 16 * (i + 1),
                allocations: 100 * (i as u64 + 1),
                frees: 90 * (i as u64 + 1),
                blocks_in_use: 10 * (i as u64 + 1),
                bytes_in_use: 0,
                peak_blocks_in_use: 20,
                peak_bytes_in_use: 0,
            };
        }
        Stats {
            allocations: 5_500_000,
            frees: 5_000_000,
            bytes_in_use: 25_889_160,
            peak_bytes_in_use: 30 << 20,
            large_allocations: 55,
            large_frees: 54,
            classes,
            heaps: 3,
            mapped_bytes: 40 << 20,
            dirty_free_bytes: 0,
            metadata_bytes: 4 << 20,
            sampled_allocations: 0,
        }
    }

    #[test]
    fn the_text_shows_the_counters_and_the_busiest_classes() {
        let text = sample().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "allocations               5,500,000");
        assert_eq!(lines[1], "frees                     5,000,000");
        assert_eq!(lines[2], "peak bytes in use        31,457,280  (30.0 MiB)");
        assert_eq!(
            lines[3],
            "bytes in use             25,889,160  (24.7 MiB) in 500,000 blocks"
        );
        assert!(
            lines[4].ends_with("55  allocated, 54 freed"),
            "{}",
            lines[4]
        );
        assert!(lines[6].contains("(40.0 MiB) + 4.0 MiB metadata"));
        assert_eq!(lines[7], "busiest size classes:");
        // Class 9 (160-byte blocks) has the most allocations.
        assert!(
            lines[9]
                .trim_start()
                .starts_with("9      160 B          1,000"),
            "{}",
            lines[9]
        );
        assert_eq!(text.lines().filter(|l| l.contains(" B ")).count(), 8);
        assert!(text.contains("... 2 more classes"));
        let all = format!("{:#}", sample());
        assert_eq!(all.lines().filter(|l| l.contains(" B ")).count(), 10);
    }
}
