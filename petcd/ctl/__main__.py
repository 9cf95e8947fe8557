from petcd.ctl.main import main

main()
