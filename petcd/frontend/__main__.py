from petcd.frontend.process import main

main()
