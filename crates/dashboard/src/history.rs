//! Each proxy's recent scrapes, and counter increases over them: a rate is the increase of
//! a counter between the oldest scrape kept and the latest, divided by the time between
//! them (Prometheus' `rate()` over the window). A series missing from the older scrape
//! started after it (counted from zero); a counter that went down was reset (the proxy
//! restarted), and its whole latest value is the increase.

use crate::prom::Sample;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How far back rates look.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One scrape of one proxy.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// When it was taken.
    pub at: Instant,
    /// Every series.
    pub samples: Vec<Sample>,
}

/// A series' identity: name and labels.
pub type SeriesKey = (String, BTreeMap<String, String>);

/// The scrapes of one proxy within the window, oldest first.
#[derive(Debug, Default)]
pub struct History {
    scrapes: VecDeque<Scrape>,
}

impl History {
    /// Adds the latest scrape and forgets those no longer needed: the oldest kept is the
    /// newest one at least [`RATE_WINDOW`] old (so a rate always spans the full window
    /// once there is enough history).
    pub fn push(&mut self, scrape: Scrape) {
        let now = scrape.at;
        self.scrapes.push_back(scrape);
        while self.scrapes.len() > 2
            && self
                .scrapes
                .get(1)
                .is_some_and(|next| now.duration_since(next.at) >= RATE_WINDOW)
        {
            self.scrapes.pop_front();
        }
    }

    /// The latest scrape.
    #[must_use]
    pub fn latest(&self) -> Option<&Scrape> {
        self.scrapes.back()
    }

    /// The increases of every series of the latest scrape since the oldest, and the seconds
    /// between them (`None` with a single scrape: no rate yet).
    #[must_use]
    pub fn increases(&self) -> Increases<'_> {
        let (Some(oldest), Some(latest)) = (self.scrapes.front(), self.scrapes.back()) else {
            return Increases::default();
        };
        let seconds = latest.at.duration_since(oldest.at).as_secs_f64();
        let before: HashMap<(&str, &BTreeMap<String, String>), f64> = oldest
            .samples
            .iter()
            .map(|s| ((s.name.as_str(), &s.labels), s.value))
            .collect();
        let series = latest
            .samples
            .iter()
            .map(|sample| {
                let then = before
                    .get(&(sample.name.as_str(), &sample.labels))
                    .copied()
                    .unwrap_or(0.0);
                let increase = if sample.value >= then {
                    sample.value - then
                } else {
                    sample.value
                };
                SeriesChange { sample, increase }
            })
            .collect();
        Increases {
            seconds: (seconds > 0.0).then_some(seconds),
            series,
        }
    }
}

/// A series of the latest scrape and how much it grew over the window.
#[derive(Debug, Clone, Copy)]
pub struct SeriesChange<'a> {
    /// The latest sample (its value is the total since the proxy started).
    pub sample: &'a Sample,
    /// The increase over the window (the whole value with a single scrape).
    pub increase: f64,
}

/// Every series' change over the window.
#[derive(Debug, Default)]
pub struct Increases<'a> {
    /// The window's length; `None` before a second scrape.
    pub seconds: Option<f64>,
    /// One per series of the latest scrape.
    pub series: Vec<SeriesChange<'a>>,
}

impl Increases<'_> {
    /// `increase` per second, 0 without a window.
    #[must_use]
    pub fn per_second(&self, increase: f64) -> f64 {
        self.seconds.map_or(0.0, |s| increase / s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, reporter: &str, value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: [("reporter".to_owned(), reporter.to_owned())].into(),
            value,
        }
    }

    #[test]
    fn increase_counts_new_series_from_zero_and_resets_from_their_value() {
        let start = Instant::now();
        let mut history = History::default();
        history.push(Scrape {
            at: start,
            samples: vec![
                sample("a_total", "source", 10.0),
                sample("b_total", "source", 50.0),
            ],
        });
        history.push(Scrape {
            at: start + Duration::from_secs(4),
            samples: vec![
                sample("a_total", "source", 30.0),
                sample("b_total", "source", 5.0),
                sample("c_total", "source", 8.0),
            ],
        });
        let increases = history.increases();
        assert_eq!(increases.seconds, Some(4.0));
        let by_name: BTreeMap<&str, f64> = increases
            .series
            .iter()
            .map(|c| (c.sample.name.as_str(), c.increase))
            .collect();
        assert_eq!(by_name["a_total"], 20.0);
        assert_eq!(by_name["b_total"], 5.0, "a reset counts the new value");
        assert_eq!(by_name["c_total"], 8.0, "a new series counts from zero");
        assert_eq!(increases.per_second(20.0), 5.0);
    }

    #[test]
    fn keeps_one_scrape_older_than_the_window() {
        let start = Instant::now();
        let mut history = History::default();
        for second in [0, 30, 61, 70, 95] {
            history.push(Scrape {
                at: start + Duration::from_secs(second),
                samples: vec![sample("a_total", "source", second as f64)],
            });
        }
        // At 95 s: the newest scrape at least 60 s old is the one at 30 s.
        assert_eq!(history.increases().seconds, Some(65.0));
        assert_eq!(history.increases().series[0].increase, 65.0);
    }
}
