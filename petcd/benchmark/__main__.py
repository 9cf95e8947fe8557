from petcd.benchmark.main import main

main()
