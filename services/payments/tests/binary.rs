//! The `payments-service` binary as an operator runs it.

#[test]
fn the_binary_explains_its_settings_and_refuses_a_bad_one() {
    conveyor_testkit::check_service_binary(env!("CARGO_BIN_EXE_payments-service"), "payments");
}

#[tokio::test]
async fn a_start_and_a_sigterm_log_no_error() {
    conveyor_testkit::check_quiet_start_and_stop(
        env!("CARGO_BIN_EXE_payments-service"),
        "payments",
        true,
    )
    .await;
}
