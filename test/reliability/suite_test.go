package reliability

// cleanupSuite removes what the suite shared between tests (binaries, images).
func cleanupSuite() {}
