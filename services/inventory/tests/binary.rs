//! The `inventory-service` binary as an operator runs it.

#[test]
fn the_binary_explains_its_settings_and_refuses_a_bad_one() {
    conveyor_testkit::check_service_binary(env!("CARGO_BIN_EXE_inventory-service"), "inventory");
}
