#!/bin/sh
# Boot script of every LSF (resource connector) host this plugin launches, as IBM's LSF AWS
# plugins have it: IBM's placeholder line below is replaced, per request, by shell-quoted
# export lines: the template's userData pairs, the request's userData, rc_account,
# template_id, clustername (from SCRIPT_OPTIONS) and providerName.
# A template's userDataScript replaces this file (with the same placeholder, if it has one).

logfile=/tmp/user_data.log
echo "START $(date '+%Y-%m-%d %H:%M:%S')" >> "$logfile"

%EXPORT_USER_DATA%

# Add your customisation here: install or start LSF, then join the cluster. For example:
LSF_TOP=${LSF_TOP:-/opt/lsf}
LSF_CONF_FILE=$LSF_TOP/conf/lsf.conf
# LSF's RC_ACCOUNT policy: the host advertises the account it was borrowed for.
if [ -n "${rc_account}" ] && [ -f "$LSF_CONF_FILE" ]; then
    sed -i "s/\(LSF_LOCAL_RESOURCES=.*\)\"/\1 [resourcemap ${rc_account}*rc_account]\"/" \
        "$LSF_CONF_FILE"
fi
for pair in "${template_id}:templateID" "${clustername}:clusterName" \
             "${providerName}:providerName"; do
    value=${pair%%:*}
    name=${pair#*:}
    if [ -n "$value" ] && [ -f "$LSF_CONF_FILE" ]; then
        sed -i "s/\(LSF_LOCAL_RESOURCES=.*\)\"/\1 [resourcemap ${value}*${name}]\"/" \
            "$LSF_CONF_FILE"
    fi
done
if [ -x "$LSF_TOP/10.1/install/hostsetup" ]; then
    "$LSF_TOP/10.1/install/hostsetup" --top="$LSF_TOP" --boot="y" --start="y" --dynamic \
        >> "$logfile" 2>&1
fi
echo "END $(date '+%Y-%m-%d %H:%M:%S')" >> "$logfile"
