# The Exceptao server's token: wrap a tenant's new data key and unwrap stored
# ones with the transit key "exceptao", and nothing else. It cannot read,
# rotate, export or delete the key, nor rewrap. Create the key once, as an
# operator: `bao secrets enable transit && bao write -f transit/keys/exceptao`.
# (Another key name or mount: EXCEPTAO_VAULT_TRANSIT_KEY, EXCEPTAO_VAULT_TRANSIT_MOUNT.)

path "transit/encrypt/exceptao" {
  capabilities = ["update"]
}

path "transit/decrypt/exceptao" {
  capabilities = ["update"]
}
