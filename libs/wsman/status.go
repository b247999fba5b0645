package wsman

import "slices"

// ptStatus names the AMT/PT status codes that many AMT methods return as
// ReturnValue (PROTOCOL.md §2.4, from RPS src/utils/PTStatus.ts).
var ptStatus = map[int]string{
	0:    "SUCCESS",
	1:    "INTERNAL_ERROR",
	3:    "INVALID_PT_MODE",
	9:    "INVALID_REGISTRATION_DATA",
	10:   "APPLICATION_DOES_NOT_EXIST",
	11:   "NOT_ENOUGH_STORAGE",
	12:   "INVALID_NAME",
	13:   "BLOCK_DOES_NOT_EXIST",
	14:   "INVALID_BYTE_OFFSET",
	15:   "INVALID_BYTE_COUNT",
	16:   "NOT_PERMITTED",
	17:   "NOT_OWNER",
	18:   "BLOCK_LOCKED_BY_OTHER",
	19:   "BLOCK_NOT_LOCKED",
	20:   "INVALID_GROUP_PERMISSIONS",
	21:   "GROUP_DOES_NOT_EXIST",
	22:   "INVALID_MEMBER_COUNT",
	23:   "MAX_LIMIT_REACHED",
	24:   "INVALID_AUTH_TYPE",
	26:   "INVALID_DHCP_MODE",
	27:   "INVALID_IP_ADDRESS",
	28:   "INVALID_DOMAIN_NAME",
	30:   "REQUEST_UNEXPECTED",
	32:   "INVALID_PROVISIONING_STATE",
	34:   "INVALID_TIME",
	35:   "INVALID_INDEX",
	36:   "INVALID_PARAMETER",
	37:   "INVALID_NETMASK",
	38:   "FLASH_WRITE_LIMIT_EXCEEDED",
	2049: "UNSUPPORTED_OEM_NUMBER",
	2050: "UNSUPPORTED_BOOT_OPTION",
	2051: "INVALID_COMMAND",
	2052: "INVALID_SPECIAL_COMMAND",
	2053: "INVALID_HANDLE",
	2054: "INVALID_PASSWORD",
	2055: "INVALID_REALM",
	2056: "STORAGE_ACL_ENTRY_IN_USE",
	2057: "DATA_MISSING",
	2058: "DUPLICATE",
	2059: "EVENTLOG_FROZEN",
	2060: "PKI_MISSING_KEYS",
	2061: "PKI_GENERATING_KEYS",
	2062: "INVALID_KEY",
	2063: "INVALID_CERT",
	2064: "CERT_KEY_NOT_MATCH",
	2065: "MAX_KERB_DOMAIN_REACHED",
	2066: "UNSUPPORTED",
	2067: "INVALID_PRIORITY",
	2068: "NOT_FOUND",
	2069: "INVALID_CREDENTIALS",
	2070: "INVALID_PASSPHRASE",
	2072: "NO_ASSOCIATION",
	2075: "AUDIT_FAIL",
	2076: "BLOCKING_COMPONENT",
	2081: "USER_CONSENT_REQUIRED",
	2082: "OPERATION_IN_PROGRESS",
}

// StatusName is the PT status name of an AMT method ReturnValue
// (PROTOCOL.md §2.4), e.g. StatusName(2054) == "INVALID_PASSWORD". It
// returns "" for a value the table does not list. The names are stable:
// the provisioner maps them to its error codes.
func StatusName(v int) string { return ptStatus[v] }

// StatusCodes lists every value StatusName knows, ascending (for callers
// that check their own error-code mapping covers the table).
func StatusCodes() []int {
	out := make([]int, 0, len(ptStatus))
	for v := range ptStatus {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// cimStatus names the CIM_EnabledLogicalElement.RequestStateChange return
// values (DMTF CIM schema), which CIM_KVMRedirectionSAP uses instead of the
// PT table.
var cimStatus = map[int]string{
	0:    "COMPLETED",
	1:    "NOT_SUPPORTED",
	2:    "UNKNOWN_OR_UNSPECIFIED_ERROR",
	3:    "TIMEOUT",
	4:    "FAILED",
	5:    "INVALID_PARAMETER",
	6:    "IN_USE",
	4096: "JOB_STARTED",
	4097: "INVALID_STATE_TRANSITION",
	4098: "TIMEOUT_PARAMETER_NOT_SUPPORTED",
	4099: "BUSY",
}

func cimStatusName(v int) string { return cimStatus[v] }
