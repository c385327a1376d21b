//! The pool and the offload future on their own, driven by step04's executor.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::rc::Rc;

use step04::executor::{block_on, spawn};
use step05::offload;
use step05::pool::Pool;

#[test]
fn offloaded_work_comes_back_to_the_task_that_awaits_it() {
    let pool = Pool::new(NonZeroUsize::new(2).unwrap(), 64).unwrap();
    let values = block_on(async {
        let mut values = Vec::new();
        for n in 0..50u64 {
            values.push(pool.run(move || n * n).unwrap().await.unwrap());
        }
        values
    })
    .unwrap();
    assert_eq!(values, (0..50u64).map(|n| n * n).collect::<Vec<_>>());
}

#[test]
fn many_tasks_wait_on_the_pool_at_once() {
    let pool = Rc::new(Pool::new(NonZeroUsize::new(3).unwrap(), 128).unwrap());
    let total = block_on(async move {
        // The last task to finish tells the main future, through a oneshot of its own.
        let (all_done, wait_for_all) = offload::channel::<()>();
        let progress = Rc::new(RefCell::new((0u64, 0usize, Some(all_done))));
        for n in 0..100u64 {
            let (pool, progress) = (Rc::clone(&pool), Rc::clone(&progress));
            spawn(async move {
                let value = pool.run(move || n + 1).unwrap().await.unwrap();
                let (total, finished, all_done) = &mut *progress.borrow_mut();
                *total += value;
                *finished += 1;
                if *finished == 100 {
                    all_done.take().unwrap().complete(());
                }
            });
        }
        wait_for_all.await.unwrap();
        progress.borrow().0
    })
    .unwrap();
    assert_eq!(total, (1..=100).sum::<u64>());
}

#[test]
fn a_completer_dropped_without_a_value_ends_the_wait_with_an_error() {
    let (completer, offloaded) = offload::channel::<u32>();
    std::thread::spawn(move || drop(completer));
    let result = block_on(offloaded).unwrap();
    assert!(result.is_err());
}

#[test]
fn a_value_sent_before_the_first_poll_is_there_at_once() {
    let (completer, offloaded) = offload::channel();
    completer.complete("ready");
    assert_eq!(block_on(offloaded).unwrap().unwrap(), "ready");
}
