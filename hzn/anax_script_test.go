package hzn_test

import (
	"strings"
	"testing"
)

// TestAnaxSecretsManagerScript runs, in order, the hzn command lines of anax's
// test/gov/hzn_secretsmanager.sh (open-horizon/anax; org userdev, admin userdevadmin) with
// this hzn against a real agbot, and checks what that script checks: the output holds the
// word it greps for (stdout only, or stdout and stderr where the script has 2>&1). The exit
// codes are anax's hzn's for the same answers (the script does not check them).
func TestAnaxSecretsManagerScript(t *testing.T) {
	h := startHub(t, "userdev", "userdevadmin", "userdevadminpw")
	const (
		org   = "userdev"
		admin = "userdevadmin:userdevadminpw"
	)
	// Written as the script's CMD strings; $CMD in bash splits on spaces, so does this.
	sub := strings.NewReplacer("${USERDEV_ORG}", org, "${USERDEV_ADMIN_AUTH}", admin)
	steps := []struct {
		cmd      string
		stderr   bool   // the script ran it with 2>&1
		want     string // what the script greps for ("" where it only prints the answer)
		wantCode int
	}{
		// ORG SECRETS
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} no-password", false, "false", 1},
		{"hzn sm secret add --secretKey password -d password123 -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH}", false, "test-password", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "true", 0},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "password123", 0},
		{"hzn sm secret add --secretKey password -d password321 -O -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "", 0},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "password321", 0},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "false", 1},
		// USER SECRETS
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/no-password", false, "false", 1},
		{"hzn sm secret add --secretKey password -d password123 -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin", false, "test-password", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "true", 0},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "password123", 0},
		{"hzn sm secret add --secretKey password -d password321 -O -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "", 0},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "password321", 0},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/test-password", false, "false", 1},
		// MULTI-PART SECRETS
		{"hzn sm secret add -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} --secretKey password -d password123 test/password1", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH}", false, "test/password1", 0},
		{"hzn sm secret add -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} --secretKey password -d password123 test/more-passwords/password2", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH}", false, "test/more-passwords/password2", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test", false, "false", 1},
		{"hzn sm secret list -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test/more-passwords", false, "false", 1},
		// EXPECTED ERRORS
		{"hzn sm secret add --secretKey password -d password123 -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "", 0},
		{"hzn exchange user create -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} userdevuser1 userdevuser1pw", false, "", 0},
		{"hzn exchange user create -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} userdevuser2 userdevuser2pw", false, "", 0},
		{"hzn sm secret add --secretKey password -d password123 -o ${USERDEV_ORG} -u userdevuser1:userdevuser1pw user/userdevuser1/test-password", false, "", 0},
		{"hzn sm secret list -o ${USERDEV_ORG} -u userdevuser2:userdevuser2pw user/userdevuser1/test-password", true, "Permission denied", 7},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u userdevuser2:userdevuser2pw user/userdevuser1/test-password", true, "Permission denied", 7},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} fake-password", true, "nothing to remove", 7},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin/fake-password", true, "nothing to remove", 7},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} fake-password", true, "No secret(s) found", 7},
		{"hzn sm secret list -o ${USERDEV_ORG} -u userdevuser1:userdevuser1pw test-password", true, "true", 0},
		{"hzn sm secret read -o ${USERDEV_ORG} -u userdevuser1:userdevuser1pw test-password", true, "Permission denied", 7},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevuser1/test-password", true, "Permission denied", 7},
		{"hzn sm secret add --secretKey password -d password456 -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevuser1/fake-password", true, "Permission denied", 7},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user", true, "User must be specified", 7},
		{"hzn sm secret read -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevadmin", true, "Incorrect secret name", 7},
		{"hzn sm secret list -o ${USERDEV_ORG} -u userdevfake:userdevfakepw test-password", true, "Failed to authenticate", 7},
		// CLEANUP (the script prints these answers without checking them)
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test-password", false, "", 0},
		// An org admin may not touch a user's own secrets here (design §6), so this one is refused.
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} user/userdevuser1/test-password", false, "", 7},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test/password1", false, "", 0},
		{"hzn sm secret remove -f -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} test/more-passwords/password2", false, "", 0},
		{"hzn exchange user remove -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} -f userdevuser1", false, "", 0},
		{"hzn exchange user remove -o ${USERDEV_ORG} -u ${USERDEV_ADMIN_AUTH} -f userdevuser2", false, "", 0},
	}
	for i, st := range steps {
		args := strings.Fields(sub.Replace(st.cmd))
		if args[0] != "hzn" {
			t.Fatalf("step %d: %q is not an hzn command line", i, st.cmd)
		}
		out, errOut, code := h.run(nil, "", args[1:]...)
		res := out
		if st.stderr {
			res += errOut
		}
		if !strings.Contains(res, st.want) || code != st.wantCode {
			t.Errorf("step %d: %s\n exit %d (want %d)\n stdout %q\n stderr %q\n want output holding %q", i, sub.Replace(st.cmd), code, st.wantCode, out, errOut, st.want)
		}
		for _, v := range []string{"password123", "password321", "password456"} {
			if strings.Contains(errOut, v) {
				t.Errorf("step %d: stderr holds a secret value: %q", i, errOut)
			}
		}
	}
	// After the cleanup the org holds only what the admin could not remove.
	out, _, _ := h.run(nil, "", "sm", "secret", "list", "-o", org, "-u", admin)
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("org secrets after the cleanup: %s", out)
	}
}
