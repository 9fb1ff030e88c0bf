//! How far a build is, told to whoever watches it: `twin up` draws it as its dataset's live line;
//! a build run alone (`twin dataset build`) draws its own bars when standard error is a terminal.

use std::sync::Arc;

/// The stages a build reports, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Sources collected, of all the spec's sources.
    Collecting,
    /// Chunks embedded, of those not in the embedding cache.
    Embedding,
    /// Fine-tuning samples being made (instructions asked of the generator, when there is one).
    Samples,
    /// The revision's artifacts being written.
    Publishing,
}

impl Stage {
    /// The stage as a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Collecting => "collecting",
            Self::Embedding => "embedding",
            Self::Samples => "making fine-tuning samples",
            Self::Publishing => "publishing",
        }
    }

    /// What the stage counts.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Collecting => "sources",
            Self::Embedding => "chunks",
            Self::Samples | Self::Publishing => "",
        }
    }
}

/// Whoever watches a build: told (stage, done, total).
type Watcher = Arc<dyn Fn(Stage, u64, u64) + Send + Sync>;

/// Where a build's progress goes; by default nowhere but its own terminal bars.
#[derive(Clone, Default)]
pub struct Progress(Option<Watcher>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Progress(watched)" } else { "Progress(terminal)" })
    }
}

impl Progress {
    /// Progress told to `watch` as (stage, done, total); total 0 when the stage counts nothing.
    pub fn to(watch: impl Fn(Stage, u64, u64) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(watch)))
    }

    /// The counter of a stage of `total` items: told to the watcher, else drawn as a bar on
    /// standard error when it is a terminal (log lines carry the counts otherwise).
    pub fn stage(&self, stage: Stage, total: u64) -> Counter {
        if let Some(watch) = &self.0 {
            watch(stage, 0, total);
            return Counter {
                stage,
                total,
                watch: Some(watch.clone()),
                bar: indicatif::ProgressBar::hidden(),
            };
        }
        Counter { stage, total, watch: None, bar: terminal_bar(total, stage.label()) }
    }
}

/// One stage's count.
pub struct Counter {
    stage: Stage,
    total: u64,
    watch: Option<Watcher>,
    bar: indicatif::ProgressBar,
}

impl Counter {
    /// `done` of the stage's items are done.
    pub fn at(&self, done: u64) {
        if let Some(watch) = &self.watch {
            watch(self.stage, done, self.total);
        }
        self.bar.set_position(done);
    }

    /// The stage is over.
    pub fn finish(self) {
        self.at(self.total);
        self.bar.finish_and_clear();
    }
}

fn terminal_bar(total: u64, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if total == 0 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}
