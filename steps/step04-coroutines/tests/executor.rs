//! The executor, reactor and timers on their own, without the server.

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::rc::Rc;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use step04::executor::{block_on, spawn, yield_now};
use step04::net::TcpListener;
use step04::time::{sleep, timeout};

/// How long a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(60);

/// Sets its flag when dropped.
struct SetOnDrop(Rc<Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn block_on_returns_the_output_of_its_future() {
    assert_eq!(block_on(async { 6 * 7 }).unwrap(), 42);
}

#[test]
fn spawned_tasks_run_when_the_spawning_task_yields() {
    let runs = Rc::new(Cell::new(0));
    let seen = block_on({
        let runs = Rc::clone(&runs);
        async move {
            for _ in 0..10 {
                let runs = Rc::clone(&runs);
                spawn(async move { runs.set(runs.get() + 1) });
            }
            assert_eq!(runs.get(), 0, "spawn queues a task, it does not run it");
            yield_now().await;
            runs.get()
        }
    })
    .unwrap();
    assert_eq!(seen, 10);
}

#[test]
fn a_waker_called_on_another_thread_interrupts_the_reactor_wait() {
    // Nothing is registered with the reactor and no timer is set: the executor, out of ready
    // tasks, sleeps in the poller with no timeout. Only the waker's notification can end it.
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let answer = block_on(async {
            let slot: Arc<Mutex<(Option<u32>, Option<Waker>)>> = Arc::default();
            let (waiting, waker_stored) = mpsc::channel();
            let worker_slot = Arc::clone(&slot);
            thread::spawn(move || {
                waker_stored.recv().unwrap();
                // Give the executor a moment to fall asleep (it works either way).
                thread::sleep(Duration::from_millis(20));
                let mut slot = worker_slot.lock().unwrap();
                slot.0 = Some(7);
                if let Some(waker) = slot.1.take() {
                    waker.wake();
                }
            });
            poll_fn(|cx| {
                let mut slot = slot.lock().unwrap();
                match slot.0 {
                    Some(answer) => Poll::Ready(answer),
                    None => {
                        slot.1 = Some(cx.waker().clone());
                        let _ = waiting.send(());
                        Poll::Pending
                    }
                }
            })
            .await
        });
        let _ = done.send(answer.unwrap());
    });
    let answer = result
        .recv_timeout(PATIENCE)
        .expect("the wake-up from another thread never reached the task");
    assert_eq!(answer, 7);
}

#[test]
fn a_finished_task_is_dropped_at_once_and_unfinished_ones_when_block_on_returns() {
    let finished = Rc::new(Cell::new(false));
    let unfinished = Rc::new(Cell::new(false));
    let late_waker: Rc<RefCell<Option<Waker>>> = Rc::default();
    block_on({
        let (finished, unfinished) = (Rc::clone(&finished), Rc::clone(&unfinished));
        let late_waker = Rc::clone(&late_waker);
        async move {
            let guard = SetOnDrop(Rc::clone(&finished));
            let keep_waker = Rc::clone(&late_waker);
            spawn(async move {
                let _guard = guard;
                poll_fn(|cx| {
                    *keep_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
            });
            let guard = SetOnDrop(Rc::clone(&unfinished));
            spawn(async move {
                let _guard = guard;
                pending::<()>().await;
            });
            yield_now().await;
            assert!(finished.get(), "a task is dropped as soon as it finishes");
            assert!(!unfinished.get(), "a pending task is kept");
            // Waking a finished task queues an id nobody has: harmless.
            late_waker.borrow_mut().take().unwrap().wake();
            yield_now().await;
        }
    })
    .unwrap();
    assert!(unfinished.get(), "block_on drops the tasks still pending");
}

#[test]
fn a_task_is_polled_once_however_often_it_is_woken() {
    let polls = Rc::new(Cell::new(0));
    block_on({
        let polls = Rc::clone(&polls);
        async move {
            let mut first = true;
            poll_fn(|cx| {
                polls.set(polls.get() + 1);
                if first {
                    first = false;
                    for _ in 0..5 {
                        cx.waker().wake_by_ref();
                    }
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
        }
    })
    .unwrap();
    assert_eq!(polls.get(), 2);
}

#[test]
fn sleep_waits_at_least_its_duration() {
    let start = Instant::now();
    block_on(sleep(Duration::from_millis(20))).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn timeout_drops_the_future_that_lost_and_its_socket_wait() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    block_on(async move {
        let listener = TcpListener::from_std(std_listener).unwrap();
        // Nobody connects: the timer wins and the accept is dropped mid-wait.
        let accepted = timeout(Duration::from_millis(10), listener.accept()).await;
        assert!(accepted.is_none());
        // The listener waits again as good as new. The kernel completes the handshake
        // without us, so this blocking connect returns at once.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (stream, _peer) = timeout(PATIENCE, listener.accept())
            .await
            .expect("the waiting connection is accepted")
            .unwrap();
        // And a pending wait on the stream is dropped with it at the end of the block.
        let read_wait = timeout(Duration::from_millis(10), stream.read(&mut [0; 8])).await;
        assert!(read_wait.is_none(), "the client sent nothing");
    })
    .unwrap();
}
