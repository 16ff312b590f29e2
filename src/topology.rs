//! Topology: builds the component graph from a validated [`Config`] and runs it.
//!
//! Every source and transform feeds a [`Fanout`] holding the input queues of the components
//! that list it in `inputs` (fan-out); a route transform feeds one per named output, which
//! consumers list as `NAME.OUTPUT`. A component listed by several inputs shares one input
//! queue among them (fan-in). Each sink's input queue is sized and behaves as its dispatcher's
//! `queue_size` and `when_full` say; transform input queues hold [`TRANSFORM_QUEUE_EVENTS`]
//! events and always block.
//!
//! Guarantees:
//! - Every component is built before any task starts: a component that cannot be built (a sink
//!   file that cannot be opened) fails the start with its name, and nothing runs.
//! - [`RunningTopology::shutdown`] stops the sources, lets every queue drain in order
//!   (transforms end when all their inputs have ended, sinks when theirs have and their
//!   dispatcher has settled every batch), and reports whether that finished within the limit.
//! - Each source's and transform's output passes its [`TapPoint`] once per batch before the
//!   fan-out (an atomic load while nobody taps; see `tap.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use log_capturer_components::ack::BatchStatus;
use log_capturer_components::dispatcher::{Dispatcher, DispatcherConfig};
use log_capturer_components::dlq::Dlq;
use log_capturer_components::dlq::{QueueDeadLetter, SinkDlq};
use log_capturer_components::queue::{
    Fanout, QueueReceiver, QueueSender, WeakQueueSender, WhenFull, queue,
};
use log_capturer_components::registry::{SettingsSender, TransformConfig};
use log_capturer_components::shutdown::{ShutdownTrigger, shutdown_pair};
use log_capturer_components::telemetry::{ComponentAttrs, ComponentKind, HealthRegistry};
use log_capturer_components::{
    BuildError, EventStream, Finishing, RouteTransform, SourceContext, Transform,
};
use tokio::sync::watch;

use crate::config::Config;
use crate::tap::{TapPoint, Taps};
use crate::tasks::{ComponentFailure, ComponentTasks};

/// Capacity, in events, of each transform's input queue.
pub const TRANSFORM_QUEUE_EVENTS: usize = 8_192;
/// Bytes a transform's input queue holds at most (see `queue::batch_bytes`): what 8 192 events
/// of 500-byte lines take, so long lines cannot make a transform queue a memory sink.
pub const TRANSFORM_QUEUE_BYTES: usize = 5 << 20;

/// A started pipeline.
pub struct RunningTopology {
    shutdown: ShutdownTrigger,
    /// Sources, transforms and dispatchers: they end when the pipeline has drained.
    tasks: ComponentTasks,
    /// Dead-letter reprocessors: they run until shutdown is triggered.
    background: ComponentTasks,
    controls: Arc<TopologyControls>,
}

/// What can change in a running pipeline (shared with the API for reloads).
#[derive(Default)]
pub struct TopologyControls {
    dispatcher_settings: BTreeMap<String, watch::Sender<DispatcherConfig>>,
    /// Each transform's settings, of its own type; a change reaches it before its next batch.
    transform_settings: BTreeMap<String, SettingsSender>,
    /// Each sink's dead-letter queue, when enabled.
    pub dlqs: BTreeMap<String, SinkDlq>,
    /// The tap points of every source and transform.
    pub taps: Taps,
}

/// How a shutdown ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Everything drained.
    Drained,
    /// Everything ended, but a component's task panicked on the way (logged with its name):
    /// what it held when it did was not acknowledged, and is read again after a restart.
    DrainedAfterPanic(ComponentFailure),
    /// The limit passed first; what was still in flight is redelivered by sources that
    /// acknowledge (their committed positions did not move past it).
    TimedOut,
}

/// Builds every component, then starts them. `data_dir` is handed to sources for their state.
pub fn start(
    config: &Config,
    health: &HealthRegistry,
    data_dir: &Path,
) -> Result<RunningTopology, Vec<BuildError>> {
    let mut errors = Vec::new();

    // Input queues first: fan-outs need their senders.
    let mut inputs: BTreeMap<String, QueueSender> = BTreeMap::new();
    let mut sink_receivers: BTreeMap<String, QueueReceiver> = BTreeMap::new();
    let mut transform_receivers: BTreeMap<String, QueueReceiver> = BTreeMap::new();
    for (name, sink) in &config.sinks {
        let (tx, rx) = queue(
            sink.dispatcher.queue_size,
            sink.dispatcher.queue_max_bytes,
            sink.dispatcher.when_full,
            Some(name),
        );
        inputs.insert(name.clone(), tx);
        sink_receivers.insert(name.clone(), rx);
    }
    for name in config.transforms.keys() {
        let (tx, rx) = queue(
            TRANSFORM_QUEUE_EVENTS,
            TRANSFORM_QUEUE_BYTES,
            WhenFull::Block,
            None,
        );
        inputs.insert(name.clone(), tx);
        transform_receivers.insert(name.clone(), rx);
    }
    // One fan-out per output: a source's or transform's own (`NAME`), or each named output of
    // a route transform (`NAME.OUTPUT`), as consumers name them in `inputs`.
    let mut fanouts: BTreeMap<String, Fanout> = config
        .sources
        .keys()
        .cloned()
        .chain(
            config
                .transforms
                .iter()
                .flat_map(|(name, t)| output_names(name, &t.config)),
        )
        .map(|output| (output, Fanout::new()))
        .collect();
    let consumers = config
        .transforms
        .iter()
        .map(|(name, t)| (name, &t.inputs))
        .chain(config.sinks.iter().map(|(name, s)| (name, &s.inputs)));
    for (consumer, consumer_inputs) in consumers {
        for input in consumer_inputs {
            if let (Some(fanout), Some(sender)) = (fanouts.get_mut(input), inputs.get(consumer)) {
                fanout.add(consumer.as_str().into(), sender.clone());
            }
        }
    }
    // A transform's output that only sinks read needs its events' parsed fields no further.
    let read_by_transforms = outputs_read_by_transforms(config);
    for (name, transform) in &config.transforms {
        for output in output_names(name, &transform.config) {
            if let Some(fanout) = fanouts.get_mut(&output)
                && !read_by_transforms.contains(output.as_str())
            {
                fanout.drop_fields_before_sending();
            }
        }
    }
    // Dead-letter replays feed their sink's queue without keeping it open.
    let replay_inputs: BTreeMap<String, WeakQueueSender> = config
        .sinks
        .keys()
        .filter_map(|name| inputs.get(name).map(|tx| (name.clone(), tx.downgrade())))
        .collect();
    // Only fan-outs hold senders now: a queue closes when all its producers have ended.
    drop(inputs);

    let taps = Taps::new(config.sources.keys().chain(config.transforms.keys()));
    let (shutdown, signal) = shutdown_pair();
    let mut sources: Vec<(String, EventStream, Fanout, Finishing)> = Vec::new();
    for (name, spec) in &config.sources {
        let cx = SourceContext {
            key: name.as_str().into(),
            shutdown: signal.clone(),
            health: health.register(name, ComponentKind::Source),
            data_dir: data_dir.to_path_buf(),
            finishing: Finishing::default(),
        };
        let finishing = cx.finishing.clone();
        match spec.config.build(cx) {
            Ok(stream) => sources.push((
                name.clone(),
                stream,
                fanouts.remove(name).unwrap_or_default(),
                finishing,
            )),
            Err(err) => errors.push(err),
        }
    }
    let mut transforms: Vec<RunnableTransform> = Vec::new();
    let mut transform_settings = BTreeMap::new();
    for (name, spec) in &config.transforms {
        health.register(name, ComponentKind::Transform);
        match spec.config.build(name) {
            Ok((transform, settings)) => {
                if let Some(rx) = transform_receivers.remove(name) {
                    transform_settings.insert(name.clone(), settings);
                    let outputs = output_names(name, &spec.config)
                        .iter()
                        .map(|output| fanouts.remove(output).unwrap_or_default())
                        .collect();
                    transforms.push(RunnableTransform {
                        name: name.clone(),
                        transform,
                        rx,
                        outputs,
                    });
                }
            }
            Err(err) => errors.push(err),
        }
    }
    let mut dispatchers = Vec::new();
    let mut reprocessors = Vec::new();
    let mut dispatcher_settings = BTreeMap::new();
    let mut dlqs = BTreeMap::new();
    for (name, spec) in &config.sinks {
        let health = health.register(name, ComponentKind::Sink);
        let service = match spec.config.build(name) {
            Ok(service) => service,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let (settings_tx, settings_rx) = watch::channel(spec.dispatcher.clone());
        dispatcher_settings.insert(name.clone(), settings_tx);
        let mut dispatcher = Dispatcher::new(name, service.clone(), settings_rx, health.clone());
        if spec.dlq.enabled {
            match Dlq::open(data_dir, name, spec.dlq.clone()) {
                Ok(queue) => {
                    let sink_dlq = SinkDlq::new(
                        name,
                        queue,
                        spec.config.tenant().map(str::to_string),
                        signal.clone(),
                        health.clone(),
                    );
                    dispatcher =
                        dispatcher.with_dead_letter(Arc::new(QueueDeadLetter(sink_dlq.clone())));
                    if let Some(input) = replay_inputs.get(name) {
                        reprocessors.push((
                            format!("{name} (dead-letter replay)"),
                            sink_dlq.clone().run_reprocessor(
                                input.clone(),
                                health,
                                spec.dlq.reprocess_interval,
                                spec.dlq.reprocess_batch_records,
                            ),
                        ));
                    }
                    dlqs.insert(name.clone(), sink_dlq);
                }
                Err(err) => errors.push(BuildError {
                    component: name.clone(),
                    message: format!("cannot open its dead-letter queue: {err}"),
                }),
            }
        }
        if let Some(rx) = sink_receivers.remove(name) {
            dispatchers.push((name.clone(), dispatcher, rx));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut tasks = ComponentTasks::default();
    for (name, dispatcher, rx) in dispatchers {
        tasks.spawn(&name, dispatcher.run(rx));
    }
    let mut background = ComponentTasks::default();
    for (name, reprocessor) in reprocessors {
        background.spawn(&name, reprocessor);
    }
    for RunnableTransform {
        name,
        transform,
        rx,
        outputs,
    } in transforms
    {
        let tap = taps.point(&name).unwrap_or_default();
        tasks.spawn(
            &name.clone(),
            run_transform(name, transform, rx, outputs, tap),
        );
    }
    for (name, mut stream, mut fanout, finishing) in sources {
        let tap = taps.point(&name).unwrap_or_default();
        tasks.spawn(&name.clone(), async move {
            while let Some(batch) = stream.next().await {
                tap.offer(&batch);
                if !fanout.send(batch).await {
                    break;
                }
            }
            // Downstream sees the end first: what it holds until then is emitted, delivered
            // and acknowledged, and the source's last positions can be saved.
            drop(fanout);
            drop(stream);
            finishing.wait().await;
            tracing::info!(source = %name, "Source finished.");
        });
    }
    Ok(RunningTopology {
        shutdown,
        tasks,
        background,
        controls: Arc::new(TopologyControls {
            dispatcher_settings,
            transform_settings,
            dlqs,
            taps,
        }),
    })
}

/// The outputs (sources' and transforms' fan-out keys) that at least one transform reads: the
/// only readers of the events' parsed fields.
fn outputs_read_by_transforms(config: &Config) -> std::collections::BTreeSet<&str> {
    config
        .transforms
        .values()
        .flat_map(|transform| transform.inputs.iter().map(String::as_str))
        .collect()
}

/// The fan-out keys of a transform's outputs: its name, or `NAME.OUTPUT` for each named output
/// (in the order its batches come out).
fn output_names(name: &str, config: &TransformConfig) -> Vec<String> {
    let named = config.outputs();
    if named.is_empty() {
        vec![name.to_string()]
    } else {
        named
            .iter()
            .map(|output| format!("{name}.{output}"))
            .collect()
    }
}

/// A built transform with what its task needs.
struct RunnableTransform {
    name: String,
    transform: Transform,
    rx: QueueReceiver,
    /// One fan-out per output (see [`output_names`]).
    outputs: Vec<Fanout>,
}

/// Drives one transform: a function over each batch, a stream of batches, or a route over each
/// batch; what comes out goes to the fan-out of its output.
async fn run_transform(
    name: String,
    transform: Transform,
    rx: QueueReceiver,
    mut outputs: Vec<Fanout>,
    tap: Arc<TapPoint>,
) {
    let attrs = ComponentAttrs::new(&name);
    let transform = match transform {
        Transform::Route(router) => {
            run_route(&name, router, rx, outputs, &tap, &attrs).await;
            return;
        }
        other => other,
    };
    let mut fanout = if outputs.is_empty() {
        Fanout::new()
    } else {
        outputs.swap_remove(0)
    };
    let mut output: EventStream = match transform {
        Transform::Function(mut function) => Box::pin(rx.filter_map(move |mut batch| {
            function.transform(&mut batch);
            if batch.is_empty() {
                // Every event was filtered out on purpose: handled.
                batch.finalizers.settle(BatchStatus::Delivered);
                return std::future::ready(None);
            }
            std::future::ready(Some(batch))
        })),
        Transform::Stream(stream) => stream.transform(Box::pin(rx)),
        // Handled above.
        Transform::Route(_) => return,
    };
    while let Some(batch) = output.next().await {
        if batch.is_empty() {
            let mut batch = batch;
            batch.finalizers.settle(BatchStatus::Delivered);
            continue;
        }
        log_capturer_components::fault::point("transform", &name);
        attrs.processed(batch.len());
        tap.offer(&batch);
        if !fanout.send(batch).await {
            break;
        }
    }
    tracing::debug!(transform = %name, "Transform finished.");
}

/// Drives a route transform: each batch is split over the outputs, and each part goes to its
/// output's fan-out. An output nothing reads gets nothing: the route drops and acknowledges
/// what would go only there.
async fn run_route(
    name: &str,
    mut router: Box<dyn RouteTransform>,
    mut rx: QueueReceiver,
    mut outputs: Vec<Fanout>,
    tap: &TapPoint,
    attrs: &ComponentAttrs,
) {
    let read: Vec<bool> = outputs.iter().map(|fanout| !fanout.is_empty()).collect();
    while let Some(batch) = rx.next().await {
        let parts = router.route(batch, &read);
        for (mut part, fanout) in parts.into_iter().zip(outputs.iter_mut()) {
            if part.is_empty() {
                part.finalizers.settle(BatchStatus::Delivered);
                continue;
            }
            attrs.processed(part.len());
            tap.offer(&part);
            // A fan-out whose consumers all stopped (shutdown) drops the part unsettled, so
            // its source does not take it as delivered.
            fanout.send(part).await;
        }
        if outputs.iter().all(Fanout::is_empty) {
            break;
        }
    }
    tracing::debug!(transform = %name, "Transform finished.");
}

impl TopologyControls {
    /// Applies live transform settings; each transform takes them before its next batch.
    pub fn update_transforms(&self, settings: &BTreeMap<String, TransformConfig>) {
        for (name, config) in settings {
            if let Some(sender) = self.transform_settings.get(name) {
                sender.update(config);
            }
        }
    }

    /// Applies live dispatcher settings to each named sink.
    pub fn update_dispatchers(&self, settings: &BTreeMap<String, DispatcherConfig>) {
        send_changed(&self.dispatcher_settings, settings);
    }
}

/// Sends each component its new settings, waking it only when they differ from its current ones.
fn send_changed<T: Clone + PartialEq>(
    senders: &BTreeMap<String, watch::Sender<T>>,
    settings: &BTreeMap<String, T>,
) {
    for (name, config) in settings {
        if let Some(sender) = senders.get(name) {
            sender.send_if_modified(|current| {
                if current == config {
                    false
                } else {
                    *current = config.clone();
                    true
                }
            });
        }
    }
}

impl RunningTopology {
    /// The handle reloads use to change the running pipeline.
    pub fn controls(&self) -> Arc<TopologyControls> {
        self.controls.clone()
    }

    /// Waits until every component has ended on its own (all sources finished and drained);
    /// the first component that panicked on the way, if any.
    pub async fn wait_finished(&mut self) -> Option<ComponentFailure> {
        let component = self.tasks.join_all("component").await;
        // Nothing is left to replay into: stop the reprocessors too.
        self.shutdown.trigger();
        let reprocessor = self.background.join_all("reprocessor").await;
        component.or(reprocessor)
    }

    /// Resolves when a component's task panics (see [`ComponentTasks::first_failure`]); pending
    /// as long as none does.
    pub async fn failure(&mut self) -> ComponentFailure {
        tokio::select! {
            failure = self.tasks.first_failure() => failure,
            failure = self.background.first_failure() => failure,
        }
    }

    /// Stops the sources and drains the pipeline, for at most `limit`.
    pub async fn shutdown(mut self, limit: Duration) -> ShutdownOutcome {
        self.shutdown.trigger();
        let drained = tokio::time::timeout(limit, async {
            let reprocessor = self.background.join_all("reprocessor").await;
            let component = self.tasks.join_all("component").await;
            reprocessor.or(component)
        })
        .await;
        match drained {
            Ok(None) => ShutdownOutcome::Drained,
            Ok(Some(failure)) => ShutdownOutcome::DrainedAfterPanic(failure),
            Err(_) => {
                self.tasks.abort_all();
                self.background.abort_all();
                ShutdownOutcome::TimedOut
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_finite_pipeline_finishes_on_its_own_dead_letter_queues_included() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::validate(json!({
            "sources": {"gen": {"type": "generator", "count": 100, "rate": 0}},
            "sinks": {"out": {"type": "blackhole", "inputs": ["gen"]}},
        }))
        .unwrap();
        let mut running = start(&config, &HealthRegistry::default(), dir.path()).unwrap();
        assert!(running.controls().dlqs.contains_key("out"));
        let failure = tokio::time::timeout(Duration::from_secs(60), running.wait_finished())
            .await
            .expect("the pipeline ends when its only source does");
        assert_eq!(failure, None);
    }

    #[test]
    fn parsed_fields_are_kept_for_outputs_a_transform_reads_and_only_for_those() {
        let config = crate::config::validate(json!({
            "sources": {"gen": {"type": "generator", "count": 1, "rate": 0}},
            "transforms": {
                "parse": {"type": "json", "inputs": ["gen"]},
                "label": {"type": "labels", "inputs": ["parse"], "from_fields": {"level": "level"}},
                "split": {"type": "route", "inputs": ["parse"],
                          "routes": {"errors": {"fields": {"level": {"equals": "error"}}}}},
            },
            "sinks": {
                "raw": {"type": "blackhole", "inputs": ["parse", "label"]},
                "errors": {"type": "blackhole", "inputs": ["split.errors"]},
            },
        }))
        .unwrap();
        let read = outputs_read_by_transforms(&config);
        // `parse` feeds a sink too, but two transforms read its fields: they stay.
        assert!(read.contains("parse"));
        assert!(read.contains("gen"));
        // Only sinks read these: their fan-outs drop the fields.
        assert!(!read.contains("label"));
        assert!(!read.contains("split.errors"));
    }

    /// A stream transform that merges each two input batches into one, keeping both batches'
    /// acknowledgements: state held across batches, driven by the topology like any transform.
    struct Pairs;

    impl log_capturer_components::StreamTransform for Pairs {
        fn transform(self: Box<Self>, input: EventStream) -> EventStream {
            Box::pin(input.chunks(2).map(|mut pair| {
                let mut merged = pair.remove(0);
                for mut next in pair {
                    merged.events.append(&mut next.events);
                    merged
                        .finalizers
                        .merge(std::mem::take(&mut next.finalizers));
                }
                merged
            }))
        }
    }

    fn event(line: &'static str) -> log_capturer_components::event::LogEvent {
        log_capturer_components::event::LogEvent {
            timestamp_ns: 1,
            observed_ns: 1,
            line: bytes::Bytes::from_static(line.as_bytes()),
            labels: log_capturer_components::event::Labels::new([("app", "a")]),
            metadata: Vec::new(),
            source: "s".into(),
            file: None,
            replays: 0,
            fields: Default::default(),
        }
    }

    fn lines(batch: &log_capturer_components::EventBatch) -> Vec<&[u8]> {
        batch.events.iter().map(|e| &e.line[..]).collect()
    }

    #[tokio::test]
    async fn a_route_sends_each_output_its_share_and_acknowledges_once_all_are_settled() {
        use log_capturer_components::ack::{BatchNotifier, Finalizers};
        use log_capturer_components::event::EventBatch;
        let config = TransformConfig::parse(
            "transforms.r",
            "route",
            json!({"routes": {"errors": {"pattern": "ERROR"}, "pay": {"pattern": "pay"},
                              "idle": {"pattern": "idle"}}}),
        )
        .unwrap();
        let (transform, _) = config.build("r").unwrap();
        // `errors` and `pay` are read; `idle` and `_unmatched` are not.
        assert_eq!(
            output_names("r", &config),
            ["r.errors", "r.idle", "r.pay", "r._unmatched"]
        );
        let (errors_tx, mut errors_rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let (pay_tx, mut pay_rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let mut outputs = vec![Fanout::new(), Fanout::new(), Fanout::new(), Fanout::new()];
        outputs[0].add("errors_sink".into(), errors_tx);
        outputs[2].add("pay_sink".into(), pay_tx);
        let (tx, rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let task = tokio::spawn(run_transform(
            "r".into(),
            transform,
            rx,
            outputs,
            Arc::default(),
        ));

        let (notifier, first) = BatchNotifier::new_with_receiver();
        let batch = EventBatch::new(
            vec![
                event("ERROR pay"),
                event("info"),
                event("idle"),
                event("ERROR disk"),
            ],
            Finalizers::new(notifier),
        );
        tx.send(batch).await.unwrap();
        // A batch of events that go nowhere is acknowledged at once.
        let (notifier, second) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(
            vec![event("info"), event("idle")],
            Finalizers::new(notifier),
        ))
        .await
        .unwrap();
        drop(tx);
        let mut errors = errors_rx.recv().await.unwrap();
        let mut pay = pay_rx.recv().await.unwrap();
        assert_eq!(lines(&errors), [&b"ERROR pay"[..], b"ERROR disk"]);
        assert_eq!(lines(&pay), [&b"ERROR pay"[..]]);
        task.await.unwrap();
        assert!(errors_rx.recv().await.is_none() && pay_rx.recv().await.is_none());
        assert_eq!(second.await, BatchStatus::Delivered);

        let first = tokio::spawn(first);
        errors.finalizers.settle(BatchStatus::Delivered);
        drop(errors);
        tokio::task::yield_now().await;
        assert!(!first.is_finished(), "the `pay` copy is still out");
        pay.finalizers.settle(BatchStatus::Delivered);
        drop(pay);
        assert_eq!(first.await.unwrap(), BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn a_batch_the_throttle_drops_whole_is_acknowledged_as_handled() {
        use log_capturer_components::ack::{BatchNotifier, Finalizers};
        use log_capturer_components::event::EventBatch;
        use log_capturer_components::transforms::throttle::{ManualClock, ThrottleConfig};
        let throttle = ThrottleConfig {
            rate: 1.0,
            burst: Some(1),
            key: None,
            max_keys: 10,
        }
        .throttle("t", Arc::new(ManualClock::default()))
        .unwrap();
        let (tx, rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let (out_tx, mut out_rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let mut fanout = Fanout::new();
        fanout.add("out".into(), out_tx);
        let task = tokio::spawn(run_transform(
            "t".into(),
            Transform::function(throttle),
            rx,
            vec![fanout],
            Arc::default(),
        ));
        let (notifier, first) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(
            vec![event("a"), event("b")],
            Finalizers::new(notifier),
        ))
        .await
        .unwrap();
        let (notifier, second) = BatchNotifier::new_with_receiver();
        tx.send(EventBatch::new(vec![event("c")], Finalizers::new(notifier)))
            .await
            .unwrap();
        drop(tx);
        let mut passed = out_rx.recv().await.unwrap();
        assert_eq!(lines(&passed), [&b"a"[..]]);
        task.await.unwrap();
        // Nothing of the second batch went on, and nobody downstream settles it: the throttle
        // dropped it on purpose, which counts as handled.
        assert_eq!(second.await, BatchStatus::Delivered);
        passed.finalizers.settle(BatchStatus::Delivered);
        drop(passed);
        assert_eq!(first.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn a_stream_transform_is_driven_and_keeps_acknowledgements() {
        use log_capturer_components::ack::{BatchNotifier, Finalizers};
        use log_capturer_components::event::{EventBatch, Labels, LogEvent};
        let (tx, rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let (out_tx, mut out_rx) = queue(100, usize::MAX, WhenFull::Block, None);
        let mut fanout = Fanout::new();
        fanout.add("out".into(), out_tx);
        let task = tokio::spawn(run_transform(
            "pairs".into(),
            Transform::stream(Pairs),
            rx,
            vec![fanout],
            Arc::default(),
        ));
        let event = || LogEvent {
            timestamp_ns: 1,
            observed_ns: 1,
            line: bytes::Bytes::from_static(b"x"),
            labels: Labels::default(),
            metadata: Vec::new(),
            source: "s".into(),
            file: None,
            replays: 0,
            fields: Default::default(),
        };
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let (notifier, receiver) = BatchNotifier::new_with_receiver();
            tx.send(EventBatch::new(vec![event()], Finalizers::new(notifier)))
                .await
                .unwrap();
            receivers.push(receiver);
        }
        drop(tx);
        let mut first = out_rx.recv().await.unwrap();
        let mut second = out_rx.recv().await.unwrap();
        assert_eq!((first.len(), second.len()), (2, 1));
        task.await.unwrap();
        first
            .finalizers
            .settle(log_capturer_components::ack::BatchStatus::Delivered);
        second
            .finalizers
            .settle(log_capturer_components::ack::BatchStatus::Delivered);
        for receiver in receivers {
            assert_eq!(
                receiver.await,
                log_capturer_components::ack::BatchStatus::Delivered
            );
        }
    }
}
