"""From a sweep file to validated run specs and the partition each run should go to."""
