package workflow_test

import "github.com/amtprov/amtprov/libs/secrets"

func aad(uuid, column string) []byte { return secrets.AAD("device_credentials", uuid, column) }
