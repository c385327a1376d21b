//! The conformance suite: every check of `conformance::checks`, run against every step.
//!
//! A step joins with one line at the bottom: `suite!(stepNN: features);`, where the features
//! say which checks beyond the protocol basics apply:
//!
//! - `concurrent`: serves many connections at once (200 open connections all answered);
//! - `thousands`: 2,000 concurrent connections, and an ignored 10,000-idle check
//!   (`cargo test -p conformance -- --ignored ten_thousand`);
//! - `greedy`: one connection that always has a request waiting does not keep the server
//!   from answering another (not yet step06: making it so is step06's exercise);
//! - `fast_while_slow`: keeps answering fast requests while fib(44) computes elsewhere;
//! - `out_of_fds`: keeps serving and stops spinning when accept runs out of descriptors;
//! - `idle_timeout`: closes idle connections after `error: idle timeout`, but not one
//!   waiting for its own fib;
//! - `shutdown`: Ctrl-C or SIGTERM drains gracefully (every request received answered, no
//!   reset, exit 0), and a second signal exits at once;
//! - `busy`: a full compute-pool queue answers `error: busy`, and the connection goes on.
//!
//! Run one step's checks with `cargo test -p conformance step03::`.

/// Generates a module named after the step with one `#[test]` per check.
macro_rules! suite {
    ($step:ident : $($feature:ident),* $(,)?) => {
        mod $step {
            use conformance::checks;

            fn start() -> std::net::SocketAddr {
                conformance::start::<::$step::Server>()
            }

            #[test]
            fn values_0_to_20() { checks::values_0_to_20(start()) }
            #[test]
            fn crlf() { checks::crlf(start()) }
            #[test]
            fn blanks() { checks::blanks(start()) }
            #[test]
            fn pipelined_1000() { checks::pipelined_1000(start()) }
            #[test]
            fn one_byte_at_a_time() { checks::one_byte_at_a_time(start()) }
            #[test]
            fn bad_inputs_then_good() { checks::bad_inputs_then_good(start()) }
            #[test]
            fn line_limit() { checks::line_limit(start()) }
            #[test]
            fn half_close() { checks::half_close(start()) }
            #[test]
            fn vanishing_clients() { checks::vanishing_clients(start()) }
            #[test]
            fn in_order_across_offload() { checks::in_order_across_offload(start()) }
            #[test]
            fn line_too_long_after_offloaded() { checks::line_too_long_after_offloaded(start()) }

            /// Not a check: the entry point of the child process that `out_of_fds` and
            /// `ten_thousand_idle` start (see `conformance::child`). It returns at once
            /// unless this process was started as that child.
            #[test]
            #[ignore = "entry point of a child server process, started by other checks"]
            fn child_process_entry() {
                conformance::child::child_entry::<::$step::Server>(stringify!($step));
            }

            $( suite!(@feature $step $feature); )*
        }
    };

    (@feature $step:ident concurrent) => {
        #[test]
        fn concurrent_200() { checks::concurrent_connections(start(), 200) }
    };
    (@feature $step:ident thousands) => {
        #[test]
        fn concurrent_2000() { checks::concurrent_connections(start(), 2000) }
        #[test]
        #[ignore = "opens 10,000 connections: run with --ignored"]
        fn ten_thousand_idle() { checks::ten_thousand_idle(stringify!($step)) }
    };
    (@feature $step:ident greedy) => {
        #[test]
        fn greedy_client() { checks::greedy_client(start()) }
    };
    (@feature $step:ident fast_while_slow) => {
        #[test]
        fn fast_while_slow() { checks::fast_while_slow(start()) }
    };
    (@feature $step:ident idle_timeout) => {
        #[test]
        fn idle_timeout() {
            checks::idle_timeout(conformance::start_args::<::$step::Server>(checks::IDLE_ARGS))
        }
        #[test]
        fn not_idle_while_computing() {
            checks::not_idle_while_computing(conformance::start_args::<::$step::Server>(
                checks::COMPUTING_ARGS,
            ))
        }
    };
    (@feature $step:ident shutdown) => {
        #[test]
        #[cfg(unix)] // signals
        fn graceful_shutdown() { checks::graceful_shutdown(stringify!($step)) }
        #[test]
        #[cfg(unix)]
        fn second_signal() { checks::second_signal(stringify!($step)) }
    };
    (@feature $step:ident busy) => {
        #[test]
        fn busy_when_the_queue_is_full() {
            checks::busy_when_the_queue_is_full(conformance::start_args::<::$step::Server>(
                checks::BUSY_ARGS,
            ))
        }
    };
    (@feature $step:ident out_of_fds) => {
        #[test]
        #[cfg(unix)] // lowers RLIMIT_NOFILE, which Windows does not have
        fn out_of_fds() { checks::out_of_fds(stringify!($step)) }
    };
}

suite!(step01: idle_timeout);
suite!(step02: greedy, concurrent, fast_while_slow, out_of_fds, idle_timeout);
suite!(step03: greedy, concurrent, thousands, out_of_fds, idle_timeout, shutdown);
suite!(step04: greedy, concurrent, thousands, out_of_fds, idle_timeout, shutdown);
suite!(step05: greedy, concurrent, thousands, fast_while_slow, out_of_fds, idle_timeout, shutdown, busy);
suite!(step06: concurrent, thousands, fast_while_slow, out_of_fds, idle_timeout, shutdown, busy);
suite!(step09: greedy, concurrent, thousands, fast_while_slow, out_of_fds, idle_timeout, shutdown, busy);
// io_uring: Linux only. Elsewhere these steps build and say they need Linux; their own
// tests/io_uring.rs says loudly that they were not tested.
#[cfg(target_os = "linux")]
suite!(step07: greedy, concurrent, thousands, out_of_fds, idle_timeout, shutdown);
#[cfg(target_os = "linux")]
suite!(step08: greedy, concurrent, thousands, fast_while_slow, out_of_fds, idle_timeout, shutdown, busy);
