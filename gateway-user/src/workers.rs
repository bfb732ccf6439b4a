//! Session workers: one single-threaded tokio runtime per CPU, each on its own thread. A
//! session (its client and database sockets, its timers, its task) lives on one worker from
//! accept to close, so readiness events, wake-ups and the packets themselves stay on one
//! thread and one cache: no work stealing and no cross-thread wake-up per packet, the model of
//! nginx, haproxy and pingora. Accepted connections are handed to the workers in turn.

use std::{
    future::Future,
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::{runtime::Handle, sync::oneshot};

/// The pool of session workers.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers (at least one); `0` means one per available CPU.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let count = if count == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            count
        };
        let mut workers = Self {
            handles: Vec::with_capacity(count),
            next: AtomicUsize::new(0),
            stops: Vec::with_capacity(count),
            threads: Vec::with_capacity(count),
        };
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            workers.stops.push(stop);
            workers.threads.push(
                std::thread::Builder::new()
                    .name(format!("tollgate-worker-{index}"))
                    .spawn(move || {
                        // Runs spawned sessions until told to stop.
                        let _ = runtime.block_on(stopped);
                    })?,
            );
        }
        Ok(workers)
    }

    /// How many workers run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `task` on the next worker in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[index].spawn(task));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_worker_threads_in_turn() {
        let workers = Workers::start(2).expect("start");
        assert_eq!(workers.len(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            workers.spawn(async move {
                tokio::task::yield_now().await;
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
            });
        }
        let mut names: Vec<_> = (0..4)
            .map(|_| rx.recv().expect("ran").expect("named"))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["tollgate-worker-0", "tollgate-worker-1"]);
    }
}
