"""Helpers of the fault tests: a fork server whose children the crash tests SIGKILL, and
the crash scenarios shared by that server and the tests."""
