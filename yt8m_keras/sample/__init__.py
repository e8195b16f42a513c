"""Sample data generators, one module per raw format (`yt8m-keras sample NAME`)."""
