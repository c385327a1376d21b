//! Loud when io_uring is refused: the conformance suite would only say that step07 "could not
//! bind"; this test says why, and fails when `WORKBOOK_REQUIRE_IO_URING` is set (CI sets it).

#[test]
fn io_uring_serves_a_request() {
    conformance::io_uring_serves_a_request::<step07::Server>(
        "step07",
        step07::io_uring_unavailable,
    );
}
