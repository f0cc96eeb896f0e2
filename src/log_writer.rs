//! Where the process's log lines go: a writer thread drains them to stdout
//! in batches, so a request formats its decision line, appends it to a
//! buffer and goes on; it never waits on the pipe the container runtime
//! reads, and under load it does not wake the writer either.
//!
//! tracing-appender's `non_blocking`, used before, hands each line to its
//! thread through a channel: one wake-up of that thread per line, and, as
//! the queue is empty again at once, one `write` per line and one wake-up
//! of whatever reads the pipe. At 10,000 decisions a second that cost a
//! sixth of the webhook's throughput (docs/benchmarks.md). Here the thread
//! is woken only when it sleeps with nothing to write; after each write it
//! waits [`BATCH_WINDOW`] before it looks again, so a burst of lines
//! becomes one `write` and a quiet line is written at once.
//!
//! The buffer is bounded ([`QUEUE_BYTES`]): if stdout stops draining,
//! lines past the bound are dropped and counted ([`LogWriter::dropped`],
//! the `log_lines_dropped_total` metric) rather than held or waited for.
//! Dropping the [`Flushed`] guard writes what is queued, at exit.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer gathers lines after a write before the next one.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// The most bytes of log lines held for the writer (a few thousand lines).
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;

struct Queue {
    lines: Vec<u8>,
    /// The writer waits for a line (it is woken for the next one).
    idle: bool,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    dropped: AtomicU64,
    limit: usize,
}

impl Shared {
    /// The queue even if a writer panicked holding it: a log line is
    /// never a reason to stop.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writing end, cloned into the subscriber (`MakeWriter`). Each
/// `write` is one formatted line (tracing-subscriber writes an event in
/// one call), kept whole.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Flushes what is queued and stops the writer thread when dropped.
#[must_use = "dropping it at once stops the writer"]
pub struct Flushed {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// A writer thread writing to `out`; the guard flushes and stops it.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogWriter, Flushed)> {
        Self::spawn_with(out, QUEUE_BYTES, BATCH_WINDOW)
    }

    /// [`LogWriter::spawn`] with its bound and window given (tests).
    pub fn spawn_with<W: Write + Send + 'static>(
        out: W,
        limit: usize,
        window: Duration,
    ) -> std::io::Result<(LogWriter, Flushed)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                lines: Vec::with_capacity(64 * 1024),
                idle: false,
                closed: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || drain(&shared, out, window))?
        };
        Ok((
            LogWriter {
                shared: shared.clone(),
            },
            Flushed {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Lines dropped so far because the queue was full (a running total).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread: waits for lines, writes all that are queued in one
/// go, then lets the next batch gather.
fn drain<W: Write>(shared: &Shared, mut out: W, window: Duration) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let closed = {
            let mut queue = shared.lock();
            while queue.lines.is_empty() && !queue.closed {
                queue.idle = true;
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::swap(&mut queue.lines, &mut batch);
            queue.closed
        };
        // Nowhere to say that stdout failed but stdout: the lines are lost.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closed {
            return;
        }
        // Lines written meanwhile wake no one; only closing cuts it short.
        let queue = shared.lock();
        drop(
            shared
                .wake
                .wait_timeout_while(queue, window, |q| !q.closed)
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut queue = self.shared.lock();
        if queue.closed || queue.lines.len() + line.len() > self.shared.limit {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            // Reported as written: the request path never sees an error
            // for a log line.
            return Ok(line.len());
        }
        queue.lines.extend_from_slice(line);
        if std::mem::take(&mut queue.idle) {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

impl Drop for Flushed {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back, and count the writes of.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicU64>,
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(b);
            self.writes.fetch_add(1, Ordering::Relaxed);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Blocks every write until the test lets it go: stdout that stopped
    /// draining.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (open, turned) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = turned.wait(open).unwrap();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_all_of_them_by_exit() {
        let sink = Sink::default();
        let (writer, flushed) = LogWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(flushed);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> =
                (0..2_000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines, whole and in order");
        }
        assert_eq!(writer.dropped(), 0);
        // 8,000 lines went out in far fewer writes than lines.
        let writes = sink.writes.load(Ordering::Relaxed);
        assert!(writes < 8_000, "{writes} writes for 8,000 lines");
    }

    #[test]
    fn a_quiet_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        // A window far longer than the test waits: only the first line's
        // wake-up can have written it.
        let (mut writer, _flushed) =
            LogWriter::spawn_with(sink.clone(), QUEUE_BYTES, Duration::from_secs(60)).unwrap();
        writer.write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.bytes.lock().unwrap().as_slice() != b"alone\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was not written within 10 s"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn lines_past_the_bound_are_dropped_and_counted_while_stdout_is_stuck() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (mut writer, flushed) =
            LogWriter::spawn_with(Stuck(gate.clone()), 100, Duration::ZERO).unwrap();
        let line = [b'x'; 40];
        // However the writer thread is scheduled, at most the 100 bytes
        // queued and the batch it is stuck writing are held: of 50 lines
        // of 40 bytes, at least 50 - 2 - 2 are dropped, and writing never
        // waited on the stuck stdout.
        for _ in 0..50 {
            writer.write_all(&line).unwrap();
        }
        let dropped = writer.dropped();
        assert!((46..=50).contains(&dropped), "{dropped} dropped");
        let (open, turned) = &*gate;
        *open.lock().unwrap() = true;
        turned.notify_all();
        drop(flushed);
    }

    #[test]
    fn lines_after_the_writer_stopped_are_counted_as_dropped() {
        let sink = Sink::default();
        let (mut writer, flushed) = LogWriter::spawn(sink.clone()).unwrap();
        writer.write_all(b"before\n").unwrap();
        drop(flushed);
        writer.write_all(b"after\n").unwrap();
        assert_eq!(sink.bytes.lock().unwrap().as_slice(), b"before\n");
        assert_eq!(writer.dropped(), 1);
    }
}
