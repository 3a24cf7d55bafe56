/* Shared main() for the Check suites: TAP output for Automake's tap-driver. */
#ifndef CT_TEST_TAP_H
#define CT_TEST_TAP_H
#include <check.h>
#include <stdlib.h>

static inline int ct_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_set_tap(sr, "-");
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
#endif
