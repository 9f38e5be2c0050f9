#!/bin/bash
# An Open Horizon style service, written as services for anax are (open-horizon/examples'
# helloSecretWorld reads its secret the same ways): the secret's file under
# /open-horizon-secrets, and the ESS secrets API over the unix socket in HZN_ESS_API_ADDRESS,
# with the credentials in HZN_ESS_AUTH and the CA in HZN_ESS_CERT. It greets whoever the
# secret names, and learns of updates by polling GET /api/v1/secrets.
NAME=hw_who
ID=$(jq -r .id "$HZN_ESS_AUTH") || exit 1
TOKEN=$(jq -r .token "$HZN_ESS_AUTH") || exit 1
API=https://localhost/api/v1/secrets
# The credentials reach curl as a config read from a pipe (printf is a builtin), not as
# `-u ID:TOKEN`: argv is readable in /proc by anyone on the host.
ess() { curl --silent -w '%{http_code}' --cacert "$HZN_ESS_CERT" --unix-socket "$HZN_ESS_API_ADDRESS" \
  -K <(printf 'user = "%s:%s"\n' "$ID" "$TOKEN") "$@"; }

from_file() { jq -r .value "/open-horizon-secrets/$NAME"; }

WHO=$(from_file)
echo "Hello ${WHO}! (read from /open-horizon-secrets/$NAME)"
while true; do
  OUT=$(ess -X GET "$API")
  CODE=${OUT: -3}
  if [ "$CODE" = "200" ]; then
    for name in $(echo "${OUT::-3}" | jq -r '.[]'); do
      if [ "$name" = "$NAME" ]; then
        DETAILS=$(ess -X GET "$API/$name")
        if [ "${DETAILS: -3}" != "200" ]; then
          echo "Error: HTTP code ${DETAILS: -3} from GET $API/$name"; exit 1
        fi
        WHO=$(echo "${DETAILS::-3}" | jq -r .value)
        if [ "$WHO" != "$(from_file)" ]; then
          echo "Error: the API and the file disagree"; exit 1
        fi
      fi
      ACK=$(ess -X POST "$API/$name?received=true")
      if [ "$ACK" != "201" ]; then
        echo "Error: HTTP code $ACK from POST $API/$name?received=true"; exit 1
      fi
      echo "Hello ${WHO}! (update of $name learnt through the ESS API and acknowledged)"
    done
  elif [ "$CODE" != "404" ]; then
    echo "Error: HTTP code $CODE from GET $API"; exit 1
  fi
  sleep 0.2
done
