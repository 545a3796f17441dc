"""CDU application: sensor checks, leak handling, lead/lag pumps, PID control, modes."""
