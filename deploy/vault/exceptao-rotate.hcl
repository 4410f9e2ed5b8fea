# The token an operator runs `exceptao keys rotate` with: a new version of the
# transit key, then every stored data key rewrapped under it inside Vault (the
# data keys never leave it). `create` and `encrypt` are for moving keys in
# from the embedded local key file the first time. Retiring old versions
# (min_decryption_version) is left to a separate, deliberate step.

path "transit/keys/exceptao" {
  capabilities = ["create", "read"]
}

path "transit/keys/exceptao/rotate" {
  capabilities = ["update"]
}

path "transit/rewrap/exceptao" {
  capabilities = ["update"]
}

path "transit/encrypt/exceptao" {
  capabilities = ["update"]
}
