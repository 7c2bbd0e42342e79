#!/bin/bash
# Runs at first boot of every machine of a template that names it in userDataScript.
# Start the Symphony (or LSF) compute agent here so the host joins the grid.
echo "hostfactory-aws: $(hostname) booted" >> /var/log/hostfactory-aws-boot.log
