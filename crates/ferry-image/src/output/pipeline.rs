//! An ordered parallel map for CPU-heavy per-item work in the writers
//! (compressing and, on read-back, decompressing VMDK grains): one
//! producer thread, `threads` workers, and the results consumed on the
//! calling thread in the order they were produced. The consumer sees the
//! same sequence whatever the thread count, so the output bytes do not
//! depend on it; at most `in_flight` items exist at once, so memory does
//! not grow with the input.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};

/// Runs `produce` (which hands items to `emit`; `emit` returns false once
/// the pipeline has stopped, and `produce` should then return), maps each
/// item with `work` on one of `threads` workers (each with its own state
/// made by `init`), and passes the results to `consume` in production
/// order. The first error wins: a consumer's or worker's error stops the
/// producer; a producer's error is returned after the items before it
/// have been consumed.
pub fn ordered_map<T, R, S, E>(
    threads: usize,
    in_flight: usize,
    produce: impl FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), E> + Send,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, T) -> Result<R, E> + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    E: Send,
{
    let threads = threads.max(1);
    let in_flight = in_flight.max(threads);
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, T)>(in_flight);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (result_tx, result_rx) = mpsc::channel::<(u64, Result<R, E>)>();
        // A permit per item in flight: taken by the producer, given back
        // by the consumer once the item is consumed.
        let (permit_tx, permit_rx) = mpsc::sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            permit_tx.send(()).expect("the receiver is alive");
        }

        let producer = scope.spawn(move || {
            let mut seq = 0u64;
            let mut emit = |item: T| {
                let sent = permit_rx.recv().is_ok() && job_tx.send((seq, item)).is_ok();
                seq += 1;
                sent
            };
            produce(&mut emit)
        });
        for _ in 0..threads {
            // Each worker holds the job receiver: once they have all
            // stopped, the producer's next send fails and it stops too.
            let job_rx = Arc::clone(&job_rx);
            let result_tx = result_tx.clone();
            let (init, work) = (&init, &work);
            scope.spawn(move || {
                let mut state = init();
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, item))) = job else { break };
                    let result = work(&mut state, item);
                    let failed = result.is_err();
                    if result_tx.send((seq, result)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop((job_rx, result_tx));

        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut outcome = Ok(());
        'results: for (seq, result) in result_rx.iter() {
            pending.insert(seq, result);
            while let Some(result) = pending.remove(&next) {
                next += 1;
                if let Err(e) = result.and_then(&mut consume) {
                    outcome = Err(e);
                    break 'results;
                }
                // The producer may have finished: a lost permit is fine.
                let _ = permit_tx.send(());
            }
        }
        drop((permit_tx, result_rx));
        let produced = match producer.join() {
            Ok(produced) => produced,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        outcome.and(produced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(threads: usize, stop_at: Option<u64>) -> (Vec<u64>, Result<(), String>) {
        let mut seen = Vec::new();
        let result = ordered_map(
            threads,
            3,
            |emit| {
                for i in 0..200u64 {
                    if !emit(i) {
                        return Ok(());
                    }
                }
                Ok(())
            },
            || 0u64,
            |calls, i| {
                *calls += 1;
                // Uneven work, so workers finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 300));
                Ok(i * 2)
            },
            |r| {
                if Some(r) == stop_at {
                    return Err(format!("stop at {r}"));
                }
                seen.push(r);
                Ok(())
            },
        );
        (seen, result)
    }

    #[test]
    fn results_come_in_production_order_whatever_the_thread_count() {
        let expected: Vec<u64> = (0..200).map(|i| i * 2).collect();
        assert_eq!(run(1, None), (expected.clone(), Ok(())));
        assert_eq!(run(4, None), (expected, Ok(())));
    }

    #[test]
    fn a_consumer_error_stops_everything() {
        let (seen, result) = run(3, Some(20));
        assert_eq!(result, Err("stop at 20".to_string()));
        assert_eq!(seen, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_producer_error_is_returned_after_what_came_before() {
        let mut seen = Vec::new();
        let result: Result<(), &str> = ordered_map(
            2,
            4,
            |emit| {
                for i in 0..5u64 {
                    emit(i);
                }
                Err("read failed")
            },
            || (),
            |_, i| Ok(i),
            |r| {
                seen.push(r);
                Ok(())
            },
        );
        assert_eq!(result, Err("read failed"));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
