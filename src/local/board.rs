//! What `twin up` shows while it works. On a terminal: one live line per resource at work (a
//! spinner, or a bar with counts, rate and time left), with each status change printed above
//! the live lines. Elsewhere (CI, a pipe): plain lines, one per change, with no control
//! characters; counted work is told at each tenth, not at every item.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where `twin up` writes what it does.
#[derive(Clone)]
pub struct Board {
    live: Option<MultiProgress>,
}

impl Board {
    /// Live lines when standard output is a terminal that draws them, plain lines otherwise.
    pub fn for_stdout() -> Self {
        let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
        if std::io::stdout().is_terminal() && !dumb {
            Self { live: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stdout())) }
        } else {
            Self { live: None }
        }
    }

    /// Whether lines are drawn live (a terminal).
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Prints `text` (a status) above the live lines, or as a plain line.
    pub fn say(&self, text: &str) {
        match &self.live {
            // A terminal that cannot be drawn on still gets the line.
            Some(live) => {
                if live.println(text).is_err() {
                    println!("{text}");
                }
            }
            None => println!("{text}"),
        }
    }

    /// The live line of the resource `handle` (`twindataset/name`).
    pub fn line(&self, handle: &str) -> Line {
        let bar = self.live.as_ref().map(|live| {
            let bar = live.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_message("starting");
            bar.set_prefix(handle.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Line { handle: handle.to_string(), bar, told: Arc::new(Mutex::new(None)) }
    }
}

/// One resource's line; cloned into whatever works on the resource.
#[derive(Clone)]
pub struct Line {
    handle: String,
    bar: Option<ProgressBar>,
    /// What a plain line last told: (what, tenth of the count), so that only changes print.
    told: Arc<Mutex<Option<(String, u64)>>>,
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} ({elapsed})").expect("a valid template")
}

/// A count of `unit` while doing `what`, then `detail` (with the time left, when known) and a
/// bar that takes the rest of the line.
fn bar_style(what: &str, unit: &str, detail: &str) -> ProgressStyle {
    let escape = |text: &str| text.replace('{', "{{").replace('}', "}}");
    let template = format!(
        "{{prefix:.bold}} {} {{pos}}/{{len}} {}{} [{{wide_bar}}]",
        escape(what),
        escape(unit),
        escape(detail)
    );
    ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> ")
}

/// The time left for `total - done` more items at the pace of the `done` so far, in `elapsed`:
/// nothing before the first item (no pace yet) or after the last. Steps that come every few
/// seconds (training) are estimated from their average, not from the last instants' rate.
fn time_left(elapsed: Duration, done: u64, total: u64) -> Option<String> {
    if done == 0 || done >= total {
        return None;
    }
    let seconds = elapsed.mul_f64((total - done) as f64 / done as f64).as_secs();
    Some(match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    })
}

impl Line {
    /// Work whose size is not known: what it does, and for how long it has.
    pub fn busy(&self, what: &str) {
        match &self.bar {
            Some(bar) => {
                if bar.message() != what {
                    bar.set_style(spinner_style());
                    bar.set_message(what.to_string());
                    bar.reset_elapsed();
                }
            }
            None => self.tell(what, 0, || format!("{}: {what}", self.handle)),
        }
    }

    /// Counted work: `done` of `total` `unit` while doing `what`, and what else is known
    /// (`loss 2.41, 90 tokens/s`; unset: the rate of items), which changes the live line but not
    /// when a plain line prints.
    pub fn count(&self, what: &str, unit: &str, detail: &str, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                // The bar's message (not drawn by its template) keeps which count it shows; a
                // new count starts the bar's clock again.
                let stage = format!("{what}\u{0}{unit}");
                let restart = bar.length() != Some(total) || bar.message() != stage;
                let mut detail = match detail {
                    "" if done > 0 && !restart => format!(", {:.1}/s", bar.per_sec()),
                    "" => String::new(),
                    detail => format!(", {detail}"),
                };
                if let Some(left) = time_left(bar.elapsed(), done, total).filter(|_| !restart) {
                    detail.push_str(&format!(", {left} left"));
                }
                // The style first: the bar may draw at any change, and its message alone (the
                // stage) is not for the spinner's template.
                bar.set_style(bar_style(what, unit, &detail));
                if restart {
                    bar.reset();
                    bar.set_length(total);
                    bar.set_message(stage);
                }
                bar.set_position(done);
            }
            None => {
                let tenth = (done.min(total) * 10).checked_div(total).unwrap_or(10);
                let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
                self.tell(what, tenth, || format!("{}: {what} {done}/{total} {unit}{detail}", self.handle));
            }
        }
    }

    /// Prints the plain line `text` unless it tells what the last one told.
    fn tell(&self, what: &str, tenth: u64, text: impl FnOnce() -> String) {
        let mut told = self.told.lock().expect("line state");
        let now = (what.to_string(), tenth);
        if told.as_ref() != Some(&now) {
            println!("{}", text());
            *told = Some(now);
        }
    }

    /// The work on the resource is over: its live line goes (its status is said instead).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_prints_each_change_of_stage_and_each_tenth_only() {
        let line = Board { live: None }.line("twindataset/paul");
        line.count("embedding", "chunks", "", 0, 100);
        let first = line.told.lock().unwrap().clone();
        assert_eq!(first, Some(("embedding".into(), 0)));
        line.count("embedding", "chunks", "", 5, 100);
        assert_eq!(*line.told.lock().unwrap(), first, "5% is still the first tenth");
        line.count("embedding", "chunks", "", 10, 100);
        assert_eq!(*line.told.lock().unwrap(), Some(("embedding".into(), 1)));
        line.busy("publishing");
        assert_eq!(*line.told.lock().unwrap(), Some(("publishing".into(), 0)));
    }

    #[test]
    fn the_time_left_is_the_average_pace_times_what_remains_and_unknown_before_the_first_item() {
        let seconds = Duration::from_secs;
        assert_eq!(time_left(seconds(40), 0, 12), None, "no step done: no pace yet");
        // 11 steps of 14 s: one more, about 14 s.
        assert_eq!(time_left(seconds(154), 11, 12).as_deref(), Some("14s"));
        assert_eq!(time_left(seconds(30), 1, 12).as_deref(), Some("5m 30s"));
        assert_eq!(time_left(seconds(3600), 1, 3).as_deref(), Some("2h 00m"));
        assert_eq!(time_left(seconds(99), 12, 12), None, "done");
    }
}
