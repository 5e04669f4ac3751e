// ThreadSanitizer's options for test_models_concurrency_tsan, built in (a
// second variable cannot ride in gtest_discover_tests' ENVIRONMENT, which
// splits it at the ';'). oneDNN is not instrumented and publishes its
// shared primitive cache through synchronisation TSan cannot see; the
// first report fails the test.
extern "C" const char* __tsan_default_options() { return "ignore_noninstrumented_modules=1:halt_on_error=1"; }
