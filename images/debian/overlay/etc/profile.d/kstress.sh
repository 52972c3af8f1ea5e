# On the ttyS1 channel: a plain prompt and no echo, so that the harness's
# commands stay out of their output (as on the initramfs console).
if [ "$(tty 2>/dev/null)" = /dev/ttyS1 ]; then
    PS1='# '
    stty -echo 2>/dev/null
fi
