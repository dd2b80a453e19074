"""Reports, the HTML report, change files, the results topic, the UI."""
