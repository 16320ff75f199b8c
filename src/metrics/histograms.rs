//! Histograms (client wait, transaction and query duration) through the `metrics` crate into a
//! `metrics-exporter-prometheus` recorder owned by this pooler instance ([`HistogramRecorder`]).
//!
//! Each pool registers its handles once ([`HistogramRecorder::histograms`]), so recording is a
//! lock-free push with no key lookup. No global recorder is installed: several poolers in one
//! process (the tests) each keep their own numbers. With `metrics_listen` unset there is no
//! recorder and pools record no histograms.

use ::metrics::{Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::PoolLabels;

pub const WAIT_SECONDS: &str = "sluice_client_wait_seconds";
pub const TRANSACTION_SECONDS: &str = "sluice_transaction_duration_seconds";
pub const QUERY_SECONDS: &str = "sluice_query_duration_seconds";

/// Bucket upper bounds, in seconds. Waits are usually zero and interesting from a millisecond on;
/// transactions and queries range from sub-millisecond to minutes.
const WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The histogram handles of one pool.
pub struct Histograms {
    pub wait: Histogram,
    pub transaction: Histogram,
    pub query: Histogram,
}

/// This pooler's Prometheus recorder (not installed globally).
pub struct HistogramRecorder {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for HistogramRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl HistogramRecorder {
    pub fn new() -> HistogramRecorder {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(WAIT_SECONDS.into()), WAIT_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(TRANSACTION_SECONDS.into()),
                    DURATION_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(QUERY_SECONDS.into()), DURATION_BUCKETS)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        for (name, help) in [
            (
                WAIT_SECONDS,
                "Time a client waited for a server connection, per checkout (zero when one was free).",
            ),
            (
                TRANSACTION_SECONDS,
                "Duration of transactions, from the first message sent to the server to the ReadyForQuery that ends the transaction.",
            ),
            (
                QUERY_SECONDS,
                "Duration of requests (a simple Query, or an extended-protocol batch up to Sync), from the first message sent to the server to its ReadyForQuery.",
            ),
        ] {
            recorder.describe_histogram(
                KeyName::from(name),
                Some(Unit::Seconds),
                SharedString::from(help),
            );
        }
        let handle = recorder.handle();
        HistogramRecorder { recorder, handle }
    }

    /// Registers the histograms of one pool.
    pub fn histograms(&self, pool: &PoolLabels) -> Histograms {
        let mut labels = vec![
            Label::new("database", pool.database.clone()),
            Label::new("user", pool.user.clone()),
            Label::new("role", pool.role),
        ];
        if let Some(addr) = &pool.replica {
            labels.push(Label::new("replica", addr.clone()));
        }
        let meta = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
        let h = |name: &'static str| {
            self.recorder
                .register_histogram(&Key::from_parts(name, labels.clone()), &meta)
        };
        Histograms {
            wait: h(WAIT_SECONDS),
            transaction: h(TRANSACTION_SECONDS),
            query: h(QUERY_SECONDS),
        }
    }

    /// Folds recorded samples into the histograms, so they do not pile up between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The histograms in Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
